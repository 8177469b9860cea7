"""`nsdx exchange` (the trade) and `nsdx audit` (the ledger, rewards, flags, reports).

Every command opens the exchange core, calls one function of ``exchange.trade``,
``exchange.ledger`` or ``exchange.rewards`` and renders the result.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from .render import echo_json, table

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _yuan(amount_cny: str) -> str:
    """'280000.00' (a report's machine figure) as people read it: '¥280,000.00'."""
    from validation.money import to_fen, yuan

    return yuan(to_fen(amount_cny))


def _actor_options(f):
    f = click.option(
        "--user", "user", default=None, help="Act as this registered user (its roles)."
    )(f)
    f = click.option(
        "--as",
        "as_org",
        default=None,
        metavar="ORG",
        help="Act for this organisation (as its admin; the CLI has direct database access).",
    )(f)
    return f


def _ex(read_only: bool = False, existing: bool = False):
    """The exchange core. ``read_only`` (listings, proofs, verification): the deployment must
    exist and no key is generated; ``existing`` (signing a checkpoint, a rewards report):
    it must exist, the ledger key may be generated."""
    from nsdx.core import Nsdx

    nx = Nsdx(read_only=read_only)
    if existing:
        nx.require_state()
    return nx.exchange


def _actor(ex, as_org: str | None, user: str | None, *, write: bool = True):
    from exchange.actors import Actor, actor_for_user

    if user:
        with ex.catalogue.Session() as s:
            return actor_for_user(s, user)
    if as_org:
        return Actor.for_org(as_org, "admin", name=f"cli:{as_org}")
    if write:
        raise click.UsageError("say who acts: --as ORG or --user NAME")
    return Actor.auditor_("cli")


def _ex_actor(as_org: str | None, user: str | None, *, write: bool = True):
    """The exchange core and who acts in it (see :func:`_actor`)."""
    ex = _ex(read_only=not write)
    return ex, _actor(ex, as_org, user, write=write)


def _note_key(ex) -> None:
    if ex.signer.generated:
        click.secho(
            f"Generated the ledger signing key in {ex.home / 'ledger.key'} (mode 600). Back it "
            "up, or set NSDX_LEDGER_KEY; publish `nsdx audit pubkey` to officials.",
            fg="yellow",
            err=True,
        )


def _out(result: dict, as_json: bool, line: str) -> None:
    if as_json:
        echo_json(result)
        return
    click.echo(line)
    r = result.get("receipt")
    if r:
        click.echo(
            f"  ledger entry {r['index']} ({r['entry']['type']}), checkpoint size {r['tree_size']}, "
            f"leaf {r['leaf_hash']}"
        )


def _rows_out(
    rows: list[dict], as_json: bool, headers: list[str], cells: Callable[[dict], tuple]
) -> None:
    """A listing: ``rows`` as JSON, or a table with the line ``cells(row)`` for each row."""
    if as_json:
        echo_json(rows)
        return
    table([cells(r) for r in rows], headers)


@click.group()
def exchange() -> None:
    """Offers, orders, payments, grants, deliveries and refunds.

    Every step appends one entry to the exchange ledger and prints a receipt (with --json:
    the entry and its inclusion proof against a signed checkpoint).
    """


@exchange.group()
def enterprise() -> None:
    """Enterprise profiles of organisations (credit code, group, controllers, ...)."""


@enterprise.command("register")
@click.argument("org")
@click.option("--credit-code", required=True, help="统一社会信用代码 (18 characters, checked).")
@click.option("--name", "legal_name", required=True, help="Registered legal name.")
@click.option("--group", "corporate_group", default=None, help="Corporate group (集团).")
@click.option("--legal-rep", default=None, help="Legal representative (法定代表人).")
@click.option("--shareholder", multiple=True, help="A shareholder (repeat).")
@click.option("--controller", multiple=True, help="An actual controller (repeat).")
@click.option("--address", default=None, help="Registered address.")
@click.option("--phone", default=None)
@click.option("--bank-account", default=None)
@click.option("--in-nansha/--not-in-nansha", default=False, help="Registered in Nansha district.")
@click.option("--create-org", is_flag=True, help="Create the organisation if it does not exist.")
@click.option(
    "--region",
    default=None,
    help="Where it is registered: mainland, hong-kong, macao or abroad (default: as "
    "registered, else mainland). Another region than the credit code's: a sysadmin only.",
)
@click.option(
    "--division",
    default=None,
    help="Mainland: GB/T 2260 division code, e.g. 440115 (default: the credit code's; "
    "another one: a sysadmin only).",
)
@click.option(
    "--ciio/--not-ciio",
    default=None,
    help="A critical-information-infrastructure operator (关键信息基础设施运营者); "
    "default: as registered, else not. Clearing it: a sysadmin only.",
)
@_actor_options
@json_option
def enterprise_register(
    org,
    credit_code,
    legal_name,
    corporate_group,
    legal_rep,
    shareholder,
    controller,
    address,
    phone,
    bank_account,
    in_nansha,
    create_org,
    region,
    division,
    ciio,
    as_org,
    user,
    as_json,
):
    """Register or update ORG's enterprise profile."""
    from exchange import trade

    ex, actor = _ex_actor(as_org or org, user)
    r = trade.register_enterprise(
        ex,
        actor,
        org,
        credit_code_=credit_code,
        legal_name=legal_name,
        corporate_group=corporate_group,
        legal_representative=legal_rep,
        shareholders=list(shareholder),
        controllers=list(controller),
        registered_address=address,
        phone=phone,
        bank_account=bank_account,
        in_nansha=in_nansha,
        create_org=create_org,
        region=region,
        division=division,
        ciio=ciio,
    )
    _note_key(ex)
    _out(r, as_json, f"✓ enterprise {org}: {r['credit_code']} {r['legal_name']}")


@enterprise.command("list")
@_actor_options
@json_option
def enterprise_list(as_org, user, as_json):
    """Enterprise profiles (contact details only for your own organisation or auditors)."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user, write=False)
    _rows_out(
        trade.list_enterprises(ex, actor),
        as_json,
        ["org", "credit code", "name", "group", "in Nansha", "region", "CIIO"],
        lambda r: (
            r["org"],
            r["credit_code"],
            r["legal_name"],
            r["corporate_group"] or "-",
            "yes" if r["in_nansha"] else "no",
            _region_text(r.get("region")),
            "yes" if r.get("ciio") else "no",
        ),
    )


def _region_text(region: dict | None) -> str:
    """Where an enterprise is registered (the cross-border rules' ``region``), in a cell."""
    if not region:
        return "-"
    if region.get("region") != "mainland":
        return str(region.get("region"))
    return f"mainland {region.get('division') or ''}".strip()


@exchange.command("offer")
@click.argument("dataset")
@click.option(
    "--price",
    default=None,
    help="Price in CNY, e.g. 120000 or 120000.50 (default: the dataset's list price).",
)
@click.option(
    "--version", type=int, default=None, help="A fixed version (default: latest during the term)."
)
@click.option("--licence", "licence_terms", default="", help="Licence terms.")
@click.option("--from", "term_start", default=None, help="Term start YYYY-MM-DD (default today).")
@click.option("--to", "term_end", default=None, help="Term end YYYY-MM-DD (default a year on).")
@click.option(
    "--delivery",
    "delivery_mode",
    default="presigned-url",
    type=click.Choice(["presigned-url", "query", "delta-sharing"]),
    show_default=True,
)
@click.option(
    "--cross-border/--no-cross-border", default=False, help="Cross-border transfer allowed."
)
@click.option(
    "--access-days", type=int, default=365, show_default=True, help="Length of an access grant."
)
@_actor_options
@json_option
def offer(
    dataset,
    price,
    version,
    licence_terms,
    term_start,
    term_end,
    delivery_mode,
    cross_border,
    access_days,
    as_org,
    user,
    as_json,
):
    """Offer DATASET for sale (seller: the dataset's organisation)."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user)
    r = trade.create_offer(
        ex,
        actor,
        dataset,
        price=price,
        version=version,
        licence_terms=licence_terms,
        term_start=term_start,
        term_end=term_end,
        delivery_mode=delivery_mode,
        cross_border=cross_border,
        access_days=access_days,
    )
    _note_key(ex)
    _out(
        r,
        as_json,
        f"✓ offer {r['id']}: {r['dataset']} for {r['price_display']} ({r['version_mode']})",
    )


@exchange.command("withdraw")
@click.argument("offer_id")
@_actor_options
@json_option
def withdraw(offer_id, as_org, user, as_json):
    """Withdraw an open offer (seller)."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user)
    r = trade.withdraw_offer(ex, actor, offer_id)
    _out(r, as_json, f"✓ offer {offer_id} withdrawn")


@exchange.command("offers")
@click.option("--dataset", default=None)
@_actor_options
@json_option
def offers(dataset, as_org, user, as_json):
    """List offers."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user, write=False)
    _rows_out(
        trade.list_offers(ex, actor, dataset=dataset),
        as_json,
        [
            "offer",
            "dataset",
            "seller",
            "price",
            "version",
            "term",
            "delivery",
            "cross-border",
            "status",
        ],
        lambda o: (
            o["id"],
            o["dataset"],
            o["seller"],
            o["price_display"],
            o["version_mode"],
            f"{o['term_start']}..{o['term_end']}",
            o["delivery_mode"],
            "yes" if o["cross_border"] else "no",
            o["status"],
        ),
    )


@exchange.command("order")
@click.argument("offer_id")
@click.option("--buyer", required=True, help="The buying organisation.")
@click.option("--amount", default=None, help="Contract value in CNY (default: the offer price).")
@click.option("--contract-no", default=None)
@click.option(
    "--other-support", is_flag=True, help="The contract already got other public support."
)
@click.option(
    "--on", "on", default=None, help="Order date YYYY-MM-DD (default today; see trade rules)."
)
@_actor_options
@json_option
def order(offer_id, buyer, amount, contract_no, other_support, on, as_org, user, as_json):
    """Order an offer for --buyer (buyer)."""
    from exchange import trade

    ex, actor = _ex_actor(as_org or buyer, user)
    r = trade.place_order(
        ex,
        actor,
        offer_id,
        buyer=buyer,
        amount=amount,
        contract_no=contract_no,
        other_support=other_support,
        on=on,
    )
    _note_key(ex)
    line = f"✓ order {r['id']}: {r['buyer']} buys {r['dataset']} for {r['amount_display']}"
    xb = r.get("cross_border")
    if xb:  # the decision of the cross-border rules, and what the grant will need
        line += f"\n  cross-border: {xb['route']} (rule {xb['rule']}"
        line += f", policy {xb['policy_sha256'][:12]})"
        if xb["missing_evidence"]:
            kinds = " or ".join(xb["missing_evidence"])
            line += (
                f"\n  before the grant, record its {kinds} reference: `nsdx exchange evidence "
                f"{r['id']} --kind {xb['missing_evidence'][0]} --ref ...`"
            )
        if xb.get("filing_due"):
            line += f"\n  the GBA standard contract is to be filed by {xb['filing_due']}"
    _out(r, as_json, line)


@exchange.command("pay")
@click.argument("order_id")
@click.option(
    "--amount",
    default=None,
    help="Amount received: must equal the order amount; required when the order differs "
    "from the offer price.",
)
@click.option("--reference", default="", help="Bank transfer reference.")
@click.option(
    "--paid-on", default=None, help="Payment date YYYY-MM-DD (default today; see trade rules)."
)
@_actor_options
@json_option
def pay(order_id, amount, reference, paid_on, as_org, user, as_json):
    """Confirm payment of an order (seller or exchange operator)."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user)
    r = trade.confirm_payment(
        ex, actor, order_id, amount=amount, reference=reference, paid_on=paid_on
    )
    _out(r, as_json, f"✓ order {order_id} paid on {r['paid_on']}")


@exchange.command("grant")
@click.argument("order_id")
@click.option("--days", type=int, default=None, help="Access length (default: the offer's).")
@_actor_options
@json_option
def grant(order_id, days, as_org, user, as_json):
    """Grant the buyer access after payment (seller)."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user)
    r = trade.grant_access(ex, actor, order_id, days=days)
    _out(r, as_json, f"✓ order {order_id}: access until {r['grant_expires']}")


@exchange.command("evidence")
@click.argument("order_id")
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["filing", "gba_filing", "pia", "certification", "approval"]),
    help="filing: standard contract filing number; gba_filing: GBA standard contract "
    "filing; pia: PI impact assessment; certification; approval: security assessment.",
)
@click.option("--ref", "reference", required=True, help="The reference, e.g. SCC-2025-000123.")
@_actor_options
@json_option
def evidence(order_id, kind, reference, as_org, user, as_json):
    """Record a cross-border procedure's evidence for ORDER (the exporter, i.e. the seller).

    An order whose route needs a standard contract, a GBA contract's PI impact assessment
    or a security assessment cannot be granted before it is recorded.
    """
    from exchange import trade

    ex, actor = _ex_actor(as_org, user)
    r = trade.record_crossborder_evidence(ex, actor, order_id, kind=kind, reference=reference)
    xb = r["cross_border"]
    _out(r, as_json, f"✓ order {order_id}: {kind} {reference} recorded (route {xb['route']})")


@exchange.command("deliver")
@click.argument("order_id")
@click.option(
    "--expires",
    "expires_seconds",
    type=int,
    default=3600,
    show_default=True,
    help="Seconds the URLs stay valid (never beyond the grant).",
)
@_actor_options
@json_option
def deliver_cmd(order_id, expires_seconds, as_org, user, as_json):
    """Get presigned URLs to the granted data (buyer)."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user)
    r = trade.deliver(ex, actor, order_id, expires_seconds=expires_seconds)
    if as_json:
        echo_json(r)
        return
    d = r["delivery"]
    click.echo(f"✓ order {order_id}: version {d['version']}, URLs valid {d['expires_seconds']} s")
    for f in d["files"]:
        click.echo(f"  {f['url']}")


@exchange.command("profile")
@click.argument("order_id")
@click.option(
    "--endpoint",
    required=True,
    help="The nsdx server URL buyers reach, e.g. https://nsdx.example.cn/delta-sharing/.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the profile here (mode 600); default: print it.",
)
@click.option("--days", type=float, default=None, help="Profile lifetime (default: the grant's).")
@_actor_options
@json_option
def profile_cmd(order_id, endpoint, out, days, as_org, user, as_json):
    """Issue a Delta Sharing profile for a granted order (buyer).

    Read with the official client: delta_sharing.load_as_pandas("FILE#SHARE.SCHEMA.TABLE");
    see docs/delta-sharing.md.
    """
    import os

    from exchange import sharing

    ex, actor = _ex_actor(as_org, user)
    r = sharing.issue_profile(ex, actor, order_id, endpoint=endpoint, days=days)
    text = json.dumps(r["profile"], indent=2) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(out, 0o600)
    if as_json:
        echo_json({**r, "profile_file": str(out) if out else None})
        return
    if out is None:
        click.echo(text, nl=False)
        return
    click.echo(
        f"✓ order {order_id}: profile written to {out} (expires {r['profile']['expirationTime']})"
    )
    for t in r["tables"]:
        click.echo(f"  delta_sharing.load_as_pandas('{out}#{t}')")


@exchange.command("refund")
@click.argument("order_id")
@click.option("--amount", default=None, help="Amount refunded (default: all).")
@click.option("--reason", default="")
@click.option(
    "--on", "on", default=None, help="Refund date YYYY-MM-DD (default today; see trade rules)."
)
@_actor_options
@json_option
def refund_cmd(order_id, amount, reason, on, as_org, user, as_json):
    """Refund a paid order and revoke its access (seller)."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user)
    r = trade.refund(ex, actor, order_id, amount=amount, reason=reason, refunded_on=on)
    _out(r, as_json, f"✓ order {order_id} refunded")


@exchange.command("orders")
@click.option("--status", default=None)
@_actor_options
@json_option
def orders(status, as_org, user, as_json):
    """List orders (your organisation's; all for auditors and the CLI operator)."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user, write=False)
    _rows_out(
        trade.list_orders(ex, actor, status=status),
        as_json,
        ["order", "dataset", "seller", "buyer", "amount", "status", "paid on", "ledger"],
        lambda o: (
            o["id"],
            o["dataset"],
            o["seller"],
            o["buyer"],
            o["amount_display"],
            o["status"],
            o["paid_on"] or "-",
            o["ledger_index"],
        ),
    )


@exchange.command("show")
@click.argument("order_id")
@_actor_options
@json_option
def show(order_id, as_org, user, as_json):
    """One order."""
    from exchange import trade

    ex, actor = _ex_actor(as_org, user, write=False)
    r = trade.get_order(ex, actor, order_id)
    if as_json:
        echo_json(r)
        return
    for k, v in r.items():
        click.echo(f"{k}: {v}")


@exchange.command("demo")
@click.option(
    "--year",
    type=int,
    default=None,
    help="Year of the sample trades (default: last year, so every date is past).",
)
@click.option("--force", is_flag=True, help="Record the demo even if the ledger holds entries.")
@json_option
def demo(year, force, as_json):
    """Record a sample of exchange activity over the demo datasets (idempotent).

    Only for demonstration deployments: ledger entries can never be removed, so it refuses a
    ledger that already holds other activity unless --force is given.
    """
    from exchange.demo import run_demo

    ex = _ex()
    r = run_demo(ex, year=year, force=force)
    _note_key(ex)
    if as_json:
        echo_json(r)
        return
    if r["skipped"]:
        click.echo(f"exchange demo already recorded ({r['ledger_size']} ledger entries)")
    else:
        click.echo(
            f"✓ exchange demo: {r['enterprises']} enterprises, {r['offers']} offers, "
            f"{r['orders']} orders, ledger size {r['ledger_size']}"
        )
    xb = r.get("cross_border")
    if xb:
        click.echo(
            f"  cross-border: a Hong Kong buyer through {xb['hong_kong_route']}; an overseas "
            f"buyer refused ({(xb['refused'] or {}).get('rule')})"
        )
    click.echo(
        f"  try: nsdx audit verify && nsdx audit rewards --year {r['year']} && nsdx audit flags"
        f" && nsdx audit cross-border --year {r['year']}"
    )


# ---------------------------------------------------------------------------------- audit


@click.group()
def audit() -> None:
    """Verify the exchange ledger, print proofs, compute rewards.

    The ledger is an RFC 9162 Merkle tree of canonical-JSON events with Ed25519-signed
    C2SP checkpoints; see docs/exchange.md.
    """


@audit.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A signed checkpoint kept outside the database (repeatable).",
)
@click.option("--pubkey", default=None, help="Verifier key (default: this deployment's).")
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where the last verified checkpoint is remembered (default: "
    "$NSDX_HOME/audit/verified-checkpoint.txt; keep it off the database host).",
)
@click.option(
    "--witnesses",
    "witnesses_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Witnesses to check against (`<URL> <witness verifier key>` lines; default: the "
    "deployment's, NSDX_WITNESSES or $NSDX_HOME/witnesses.txt).",
)
@click.option("--quorum", type=int, default=None, help="Cosignatures a witnessed checkpoint needs.")
@click.option(
    "--offline",
    is_flag=True,
    help="Check the stored cosignatures only; do not ask the witnesses what they cosigned.",
)
@json_option
def verify(checkpoint_files, pubkey, state_file, witnesses_file, quorum, offline, as_json):
    """Recompute the tree from the database and check it against the signed checkpoints.

    Exits 1 and names the first entry that differs when anything was changed. Removal of
    the newest entries (with their checkpoints) is caught against a checkpoint kept outside
    the database: the one given with --checkpoint, and the one this command remembers from
    its last successful run (--state), as a transparency-log monitor does.
    """
    from exchange.ledger.verify import verify_with_state
    from exchange.witness.audit import witness_checks
    from exchange.witness.config import load_witnessing

    ex = _ex(read_only=True)
    state = Path(state_file) if state_file else ex.home / "audit" / "verified-checkpoint.txt"
    external = [Path(p).read_text(encoding="utf-8") for p in checkpoint_files]
    key = pubkey or ex.signer.verifier_key
    cfg = load_witnessing(
        ex.home, path=Path(witnesses_file) if witnesses_file else None, quorum=quorum
    )
    also = witness_checks(ex.ledger, key, cfg, ask=not offline) if cfg is not None else None
    res = verify_with_state(ex.ledger, key, kept=external, state=state, also=also)
    if as_json:
        echo_json(res.to_dict())
    elif res.ok:
        click.secho(
            f"✓ ledger verified: {res.entries} entries, {res.checkpoints_checked} signed "
            f"checkpoints, latest at size {res.latest_checkpoint}, root {res.root} "
            f"({res.seconds:.2f} s)",
            fg="green",
        )
        if res.unsigned_tail:
            click.echo(
                f"  {res.unsigned_tail} entries after the latest checkpoint are not signed yet"
            )
        _witnessing_lines(res.witnessing)
    else:
        click.secho(
            "✗ ledger verification FAILED"
            + (
                f": first entry that differs is {res.first_bad_index}"
                if res.first_bad_index is not None
                else ""
            ),
            fg="red",
            err=True,
        )
        for p in res.problems:
            click.echo(f"  {p.kind}: {p.message}", err=True)
        if any(p.kind == "fork" for p in res.problems):
            click.secho(
                "  ✗ FORK: a witness cosigned another history than this database's - the "
                "exchange showed different histories to different parties (a split view)",
                fg="red",
                err=True,
            )
    if not res.ok:
        sys.exit(1)


def _witnessing_lines(w: dict | None) -> None:
    if not w:
        return
    click.echo(
        f"  witnessed: {w['witnessed_checkpoints']} checkpoints (latest at size "
        f"{w['latest_witnessed']}), quorum {w['quorum']} of {len(w['witnesses'])} witnesses"
    )
    for v in w["views"]:
        if v["error"]:
            click.echo(f"  witness {v['witness']}: {v['error']}")
        else:
            click.echo(f"  witness {v['witness']}: cosigned size {v['size']}, agrees")


@audit.command("proof")
@click.option("--index", type=int, default=None, help="Inclusion proof of this entry.")
@click.option(
    "--from", "size1", type=int, default=None, help="Consistency proof from this checkpoint size…"
)
@click.option("--to", "size2", type=int, default=None, help="…to this one (default: the latest).")
@click.option(
    "--size", type=int, default=None, help="Checkpoint size for --index (default: the latest)."
)
@click.option(
    "--witnessed",
    is_flag=True,
    help="For --index: against the latest witnessed checkpoint (with its cosignatures).",
)
@json_option
def proof(index, size1, size2, size, witnessed, as_json):
    """Inclusion (--index N) or consistency (--from A --to B) proof; hashes in base64.

    An inclusion proof carries the checkpoint note with the witnesses' cosignature lines
    stored for it, `witnessed` (a quorum cosigned it) and `cosigners`."""
    ex = _ex(read_only=True)
    if index is not None:
        r = ex.ledger.inclusion(index, size, witnessed=witnessed)
    elif size1 is not None:
        r = ex.ledger.consistency(size1, size2)
        r = {k: r[k] for k in ("size1", "size2", "root1", "root2", "proof")} | {
            "checkpoint1": r["checkpoint1"],
            "checkpoint2": r["checkpoint2"],
        }
    else:
        raise click.UsageError("give --index N, or --from A [--to B]")
    if as_json:
        echo_json(r)
        return
    for k, v in r.items():
        if isinstance(v, list):
            click.echo(f"{k}:")
            for x in v:
                click.echo(f"  {x}")
        elif isinstance(v, str) and "\n" in v:
            click.echo(f"{k}:\n" + "".join(f"  {ln}\n" for ln in v.splitlines()), nl=False)
        else:
            click.echo(f"{k}: {v}")


@audit.command("pubkey")
def pubkey():
    """The checkpoint verifier key (C2SP signed-note form: name+keyid+base64 key)."""
    ex = _ex(read_only=True)
    click.echo(ex.signer.verifier_key)
    _note_key(ex)


@audit.command("checkpoint")
@json_option
def checkpoint(as_json):
    """Sign the current ledger head (if new) and print the signed checkpoint note."""
    ex = _ex(existing=True)
    cp = ex.ledger.checkpoint()
    if as_json:
        echo_json(cp.to_dict())
    else:
        click.echo(cp.note, nl=False)


@audit.command("witness")
@click.option(
    "--witnesses",
    "witnesses_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File of `<URL> <witness verifier key>` lines (default: $NSDX_WITNESSES, else "
    "$NSDX_HOME/witnesses.txt).",
)
@click.option(
    "--quorum",
    type=int,
    default=None,
    help="Cosignatures needed (default: $NSDX_WITNESS_QUORUM, else a majority).",
)
@click.option("--timeout", type=float, default=None, help="Seconds per witness (default 5).")
@click.option("--status", "status_only", is_flag=True, help="Only show the state; ask nobody.")
@json_option
def witness_cmd(witnesses_file, quorum, timeout, status_only, as_json):
    """Send the latest checkpoint to the witnesses now; it is witnessed at a quorum.

    The job worker (`nsdx serve`, `nsdx worker`) does this by itself after every new
    checkpoint; this command does one round at once (e.g. from a timer on a deployment
    without a server) and shows the cosignatures stored with the checkpoint.
    """
    import dataclasses

    from exchange.witness.config import load_witnessing
    from exchange.witness.publish import WitnessQuorumNotReached, witness_latest, witness_status

    ex = _ex(read_only=True)
    if status_only:
        cp = ex.ledger.latest_checkpoint()
        st = witness_status(ex.engine, cp.tree_size if cp else None)
        if as_json:
            echo_json(st)
            return
        lw = st["latest_witnessed"]
        click.echo(
            f"latest checkpoint: {cp.tree_size if cp else '-'}; latest witnessed: "
            + (
                f"{lw['tree_size']} ({lw['cosigners']} cosigners, quorum {lw['quorum']})"
                if lw
                else "none"
            )
        )
        table(
            [
                (w["witness"], w["size"], w["failures"], w["last_error"] or "")
                for w in st["witnesses"]
            ],
            ["witness", "size", "failures", "last error"],
        )
        return
    cfg = load_witnessing(
        ex.home, path=Path(witnesses_file) if witnesses_file else None, quorum=quorum
    )
    if cfg is None:
        raise click.UsageError(
            "no witnesses configured: --witnesses FILE, NSDX_WITNESSES=FILE or "
            "$NSDX_HOME/witnesses.txt (one `<URL> <witness verifier key>` a line)"
        )
    if timeout is not None:
        cfg = dataclasses.replace(cfg, timeout=timeout)
    r = witness_latest(ex.ledger, cfg, force=True)
    if as_json:
        echo_json(r.to_dict())
    else:
        click.echo(r.note, nl=False)
        click.echo(
            f"checkpoint {r.tree_size}: cosigned by {', '.join(r.cosigners) or 'nobody'} "
            f"(quorum {r.quorum}) - {'witnessed' if r.witnessed else 'NOT witnessed'}",
            err=True,
        )
        for name, why in r.failures.items():
            click.echo(f"  {name}: {why}", err=True)
    if not r.witnessed:
        if as_json:
            sys.exit(1)
        raise WitnessQuorumNotReached(
            f"{len(r.cosigners)} of {len(cfg.witnesses)} witnesses cosigned checkpoint "
            f"{r.tree_size}; the quorum is {r.quorum}",
            hint="the trades go on; it is asked again after a back-off (or run this again)",
        )


@audit.command("checkpoints")
@json_option
def checkpoints(as_json):
    """Every signed checkpoint (tree size, root)."""
    ex = _ex(read_only=True)
    cps = ex.ledger.checkpoints()
    witnessed = ex.ledger.witnessed_sizes()
    if as_json:
        echo_json([c.to_dict() | {"witnessed": c.tree_size in witnessed} for c in cps])
        return
    from exchange.ledger.store import b64

    table(
        [(c.tree_size, b64(c.root), "yes" if c.tree_size in witnessed else "") for c in cps],
        ["tree size", "root", "witnessed"],
    )


@audit.command("entry")
@click.argument("index", type=int)
def entry(index):
    """One ledger entry (payload and leaf hash) as JSON."""
    echo_json(_ex(read_only=True).ledger.entry(index))


def _report(ex, year, policy_path, at):
    from exchange.reports import rewards_report

    return rewards_report(ex, year, policy_path=policy_path, tree_size=at)


_policy_opt = click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Reward policy YAML (default: NSDX_REWARD_POLICY or the built-in).",
)
_at_opt = click.option(
    "--at",
    "at",
    type=int,
    default=None,
    help="Compute from the checkpoint of this tree size (default: the latest).",
)


@audit.command("rewards")
@click.option("--year", type=int, required=True)
@_policy_opt
@_at_opt
@click.option(
    "--csv", "as_csv", is_flag=True, help="CSV: one row per enterprise, then one per transaction."
)
@json_option
def rewards(year, policy_path, at, as_csv, as_json):
    """Data-transaction rewards of YEAR: per enterprise and per transaction, with reasons."""
    ex = _ex(existing=True)
    rep = _report(ex, year, policy_path, at)
    if as_json:
        from catalogue.jsonout import dumps

        click.echo(dumps(rep, indent=2, sort_keys=True))
        return
    if as_csv:
        from exchange.reports import rewards_csv

        sys.stdout.write(rewards_csv(rep))
        return
    cp = rep["checkpoint"]
    click.secho(f"{rep['programme']} — {year}", bold=True)
    click.echo(
        f"computed from checkpoint size {cp['tree_size']}, root {cp['root']} (entries verified "
        f"against it); policy sha256 {rep['policy']['sha256'][:16]}…"
    )
    newer = ex.ledger.head_size() - cp["tree_size"]
    if newer > 0 and at is None:
        click.echo(
            f"  {newer} newer ledger {'entry is' if newer == 1 else 'entries are'} not covered "
            "by a signed checkpoint yet"
        )
    table(
        [
            (
                e["org"],
                e["credit_code"],
                e["group"],
                e["trades"],
                _yuan(e["eligible_cny"]),
                _yuan(e["reward_cny"]),
                _yuan(e["capped_reward_cny"]),
            )
            for e in rep["enterprises"]
        ],
        ["enterprise", "credit code", "group", "trades", "eligible", "reward", "capped reward"],
        title="rewards per enterprise",
    )
    table(
        [
            (
                t["ledger_index"],
                t["seller"],
                t["buyer"],
                t["dataset"],
                _yuan(t["amount_cny"]),
                t["date"] or "-",
                _yuan(t["contribution_cny"])
                if t["eligible"]
                else "excluded: "
                + "; ".join(
                    r["code"] + (f" ({r['detail']})" if r["detail"] else "")
                    for r in t["excluded_because"]
                ),
            )
            for t in rep["transactions"]
        ],
        ["ledger", "seller", "buyer", "dataset", "amount", "date", "contribution / reason"],
        title="transactions",
    )
    tot = rep["totals"]
    click.echo(
        f"total eligible {_yuan(tot['eligible_cny'])}, reward {_yuan(tot['reward_cny'])}, "
        f"after caps {_yuan(tot['capped_reward_cny'])}"
    )


@audit.command("flags")
@_policy_opt
@_at_opt
@json_option
def flags(policy_path, at, as_json):
    """Suspected wash trades: cycles, mirrored trades, split trades."""
    from exchange.reports import wash_flags

    ex = _ex(read_only=True)
    res = wash_flags(ex, policy_path=policy_path, tree_size=at)
    if as_json:
        echo_json(res)
        return
    table(
        [
            (f["kind"], ", ".join(map(str, f["indices"])), " ".join(f["parties"]), f["detail"])
            for f in res["flags"]
        ],
        ["kind", "ledger entries", "parties", "detail"],
        title=f"wash-trade flags at checkpoint size {res['checkpoint']['tree_size']}",
    )


@audit.command("cross-border")
@click.option("--year", type=int, required=True)
@_at_opt
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write JSON, CSV, Parquet and an HTML page to this folder.",
)
@click.option("--csv", "as_csv", is_flag=True, help="CSV: one row per transfer, then per refusal.")
@json_option
def cross_border(year, at, out, as_csv, as_json):
    """Cross-border transfers of YEAR (数据出境): per exporter and destination, cumulative
    individuals against the thresholds, routes, evidence references and refusals."""
    from exchange.crossborder.report import (
        crossborder_csv,
        crossborder_report,
        write_crossborder_report,
    )

    if not 2000 <= year <= 2100:
        raise click.BadParameter("a year from 2000 to 2100", param_hint="--year")
    ex = _ex(read_only=True)
    if out is not None:
        files = write_crossborder_report(ex, year, Path(out), tree_size=at)
        if as_json:
            echo_json({"files": [str(f) for f in files]})
        else:
            for f in files:
                click.echo(str(f))
        return
    rep = crossborder_report(ex, year, tree_size=at)
    if as_json:
        echo_json(rep)
        return
    if as_csv:
        sys.stdout.write(crossborder_csv(rep))
        return
    cp, tot = rep["checkpoint"], rep["totals"]
    click.secho(f"cross-border transfers (数据出境) — {year}", bold=True)
    click.echo(
        f"computed from checkpoint size {cp['tree_size']}, root {cp['root']}; "
        f"{tot['transfers']} transfers, {tot['refusals']} refusals, "
        f"{tot['awaiting_evidence']} awaiting evidence"
    )
    table(
        [
            (
                x["exporter"],
                x["region"],
                x["transfers"],
                f"{x['cumulative_individuals']:,}",
                f"{x['cumulative_sensitive']:,}",
                f"{x['exempt_below']:,} / {x['assessment_from']:,}; "
                f"sensitive {x['sensitive_assessment_from']:,}",
                x["band"],
            )
            for x in rep["exporters"]
        ],
        ["exporter", "region", "transfers", "individuals", "sensitive", "thresholds", "band"],
        title="exporters: cumulative individuals this year",
    )
    table(
        [
            (
                t["ledger_index"],
                t["exporter"],
                f"{t['destination']} ({t['destination_region']})",
                t["dataset"],
                t["route"],
                t["rule"],
                f"{t['individuals_added']:,}",
                "; ".join(f"{k}={v}" for k, v in t["evidence"].items())
                or (
                    "needs " + " or ".join(t["missing_evidence"]) if t["missing_evidence"] else "-"
                ),
            )
            for t in rep["transfers"]
        ],
        ["ledger", "exporter", "destination", "dataset", "route", "rule", "added", "evidence"],
        title="transfers",
    )
    table(
        [
            (
                r["ledger_index"],
                r["stage"],
                r["exporter"],
                r["destination"],
                r["dataset"],
                r["rule"],
            )
            for r in rep["refusals"]
        ],
        ["ledger", "stage", "exporter", "destination", "dataset", "rule"],
        title="refusals",
    )


@audit.command("report")
@click.option("--year", type=int, required=True)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True)
@_policy_opt
@_at_opt
@json_option
def report(year, out, policy_path, at, as_json):
    """Yearly summary for officials: CSV, Parquet, JSON and an HTML report with charts."""
    from exchange.reports import write_yearly_report

    ex = _ex(existing=True)
    files = write_yearly_report(ex, year, Path(out), policy_path=policy_path, tree_size=at)
    if as_json:
        echo_json({"files": [str(f) for f in files]})
        return
    for f in files:
        click.echo(str(f))
