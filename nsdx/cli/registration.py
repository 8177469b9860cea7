"""`nsdx scenario` (the application-scenario library) and `nsdx registration` (data-resource
registration and its certificates). Each command opens the core, calls one function of
``catalogue.scenarios``, ``exchange.registration`` or ``exchange.certificates`` and renders
the result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .exchange import _actor_options, _ex, _ex_actor, _note_key, _out, _rows_out
from .render import echo_json

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _nx(read_only: bool = False):
    from nsdx.core import Nsdx

    return Nsdx(read_only=read_only)


@click.group()
def scenario() -> None:
    """Application scenarios (应用场景): load, list, show and check them."""


@scenario.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), default="scenarios.yaml")
@json_option
def scenario_load(file: Path, as_json: bool) -> None:
    """Create or update the scenarios of FILE (default scenarios.yaml), by name; every
    dataset they use must be in the catalogue, or nothing is saved."""
    from catalogue.scenarios import load_file, save_scenarios

    specs = load_file(file)
    saved = save_scenarios(_nx().catalogue, specs)
    if as_json:
        echo_json(saved)
        return
    for d in saved:
        click.echo(f"✓ {d['name']}: {d['title']} ({len(d['datasets'])} datasets)")


@scenario.command("list")
@click.option("--sector", default=None, help="Only this sector.")
@json_option
def scenario_list(sector: str | None, as_json: bool) -> None:
    """The scenarios, with their sector, status and datasets."""
    from catalogue.scenarios import list_scenarios

    rows = list_scenarios(_nx(read_only=True).catalogue, sector=sector)
    _rows_out(
        rows,
        as_json,
        ["name", "title", "sector", "status", "datasets", "evaluation"],
        lambda d: (
            d["name"],
            d["title"],
            d["sector"],
            d["status"],
            ", ".join(
                x["name"] + (f"@{x['version']}" if x["version"] else "") for x in d["datasets"]
            ),
            d["evaluation"].get("metric", "") if d["evaluation"] else "",
        ),
    )


@scenario.command("show")
@click.argument("name")
@json_option
def scenario_show(name: str, as_json: bool) -> None:
    """One scenario: its description, datasets, query and evaluation task."""
    from catalogue.scenarios import show

    d = show(_nx(read_only=True).catalogue, name)
    if as_json:
        echo_json(d)
        return
    click.echo(f"{d['name']}: {d['title']} / {d['title_en']}")
    click.echo(f"  sector: {d['sector']} ({d['sector_title']}), status: {d['status']}")
    click.echo(f"  proposer: {d['proposer']}")
    for x in d["datasets"]:
        click.echo(f"  uses: {x['name']}" + (f" v{x['version']}" if x["version"] else ""))
    if d["query"]:
        click.echo(f"  query: {d['query']}")
    ev = d["evaluation"]
    if ev:
        click.echo(f"  evaluation: {ev.get('metric')}")
        click.echo(f"  held-out split: {ev.get('split_query')}")


@scenario.command("check")
@click.argument("names", nargs=-1)
@json_option
def scenario_check(names: tuple[str, ...], as_json: bool) -> None:
    """Run each scenario's query and held-out split query (all scenarios, or NAMES) over
    the published data; exit 1 if one fails."""
    from catalogue.scenarios import list_scenarios
    from validation.errors import NsdxError

    nx = _nx(read_only=True)
    results, failed = [], False
    for d in list_scenarios(nx.catalogue):
        if names and d["name"] not in names:
            continue
        for u in d["datasets"]:  # the views serve the current version: a pinned one must be it
            cur = nx.catalogue.current(u["name"]) if u["version"] is not None else None
            if u["version"] is not None and (cur is None or cur.number != u["version"]):
                failed = True
                serves = f"v{cur.number}" if cur is not None else "no version"
                results.append({"scenario": d["name"], "what": f"dataset {u['name']}",
                                "ok": False,
                                "error": f"the scenario pins v{u['version']}, but the query "
                                f"views serve {serves}: its queries would run over other data "
                                "(pin the current version in scenarios.yaml, or drop the "
                                "pin)"})  # fmt: skip
        for what, sql in (("query", d["query"]), ("split", d["evaluation"].get("split_query"))):
            if not sql:
                continue
            try:
                rows = nx.query(f"SELECT count(*) AS n FROM ({sql}) AS q").column(0)[0].as_py()
                results.append({"scenario": d["name"], "what": what, "ok": True, "rows": rows})
            except NsdxError as e:
                failed = True
                results.append(
                    {"scenario": d["name"], "what": what, "ok": False, "error": e.message}
                )
    if as_json:
        echo_json(results)
    else:
        for r in results:
            if r["ok"]:
                click.echo(f"✓ {r['scenario']} {r['what']}: {r['rows']} rows")
            else:
                click.secho(f"✗ {r['scenario']} {r['what']}: {r['error']}", fg="red", err=True)
    if failed:
        sys.exit(1)


@click.group()
def registration() -> None:
    """Data-resource registration (数据资源登记): apply, review, notice, code, certificate."""


@registration.command("apply")
@click.argument("dataset")
@click.option("--scenario", default=None, help="The application scenario the product serves.")
@click.option("--compliance", default="", help="Compliance statement (合规声明).")
@click.option("--pledge", default="", help="Source-legality pledge (来源合法承诺).")
@click.option(
    "--version", type=int, default=None, help="The registered version (default: current)."
)
@click.option(
    "--kind",
    type=click.Choice(["initial", "change", "correction", "cancellation"]),
    default="initial",
    show_default=True,
)
@click.option("--reason", default="", help="Why (change, correction, cancellation).")
@_actor_options
@json_option
def registration_apply(dataset, scenario, compliance, pledge, version, kind, reason, as_org,
                       user, as_json) -> None:  # fmt: skip
    """Apply to register DATASET (or to change, correct or cancel its registration)."""
    from exchange import registration as reg

    ex, actor = _ex_actor(as_org, user)
    r = reg.apply(ex, actor, dataset, scenario=scenario, compliance_statement=compliance,
                  legality_pledge=pledge, version=version, kind=kind, reason=reason)  # fmt: skip
    _note_key(ex)
    _out(r, as_json, f"applied: {r['id']} ({r['kind']} registration of {r['dataset']})")


@registration.command("review")
@click.argument("registration_id")
@click.option("--approve/--reject", required=True, help="Approve (public notice starts) or reject.")
@click.option("--note", default="", help="The review's note (required to reject).")
@_actor_options
@json_option
def registration_review(registration_id, approve, note, as_org, user, as_json) -> None:
    """Review an application (a reviewer: `nsdx user create NAME --reviewer`)."""
    from exchange import registration as reg

    ex, actor = _ex_actor(as_org, user)
    r = reg.review(ex, actor, registration_id, approve=approve, note=note)
    _out(r, as_json, f"{r['id']}: {r['status']}"
         + (f" until {r['notice_end']}" if r["status"] == "notice" else ""))  # fmt: skip


@registration.command("object")
@click.argument("registration_id")
@click.option("--reason", required=True, help="Why the registration should not be made.")
@_actor_options
@json_option
def registration_object(registration_id, reason, as_org, user, as_json) -> None:
    """Lodge an objection during an application's public notice."""
    from exchange import registration as reg

    ex, actor = _ex_actor(as_org, user)
    r = reg.lodge_objection(ex, actor, registration_id, reason=reason)
    _out(r, as_json, f"objection lodged: {r['objections'][-1]['id']} ({r['id']}: {r['status']})")


@registration.command("resolve")
@click.argument("objection_id")
@click.option("--uphold/--dismiss", required=True, help="Uphold (reject) or dismiss it.")
@click.option("--resolution", required=True, help="How it was resolved.")
@_actor_options
@json_option
def registration_resolve(objection_id, uphold, resolution, as_org, user, as_json) -> None:
    """Resolve an objection (a reviewer)."""
    from exchange import registration as reg

    ex, actor = _ex_actor(as_org, user)
    r = reg.resolve_objection(ex, actor, objection_id, uphold=uphold, resolution=resolution)
    _out(r, as_json, f"{r['id']}: {r['status']}")


@registration.command("issue")
@click.argument("registration_id")
@_actor_options
@json_option
def registration_issue(registration_id, as_org, user, as_json) -> None:
    """Issue the registration code once the public notice has ended (a reviewer)."""
    from exchange import registration as reg

    ex, actor = _ex_actor(as_org, user)
    r = reg.issue(ex, actor, registration_id)
    _out(r, as_json, f"registered: {r['code']} ({r['dataset']}, {r['status']})")


@registration.command("list")
@click.option("--dataset", default=None)
@click.option("--status", default=None)
@click.option("--scenario", default=None)
@json_option
def registration_list(dataset, status, scenario, as_json) -> None:
    """Registrations and applications (a public register)."""
    from exchange import registration as reg
    from exchange.actors import Actor

    # the CLI reads the database itself: it is the operator's tool and sees the whole register
    rows = reg.list_registrations(_ex(read_only=True), actor=Actor.operator("cli"),
                                  dataset=dataset, status=status, scenario=scenario)  # fmt: skip
    _rows_out(
        rows,
        as_json,
        ["id", "code", "kind", "status", "dataset", "scenario", "holder", "notice ends"],
        lambda r: (
            r["id"],
            r["code"] or "",
            r["kind"],
            r["status"],
            r["dataset"],
            r["scenario"] or "",
            r["holder"],
            r["notice_end"] or "",
        ),  # fmt: skip
    )


@registration.command("show")
@click.argument("ref")
@json_option
def registration_show(ref: str, as_json: bool) -> None:
    """One registration (application id, or code: its current record)."""
    from exchange import registration as reg
    from exchange.actors import Actor

    d = reg.show(_ex(read_only=True), ref, actor=Actor.operator("cli"), full=True)
    if as_json:
        echo_json(d)
        return
    click.echo(f"{d['code'] or d['id']}: {d['kind']} registration, {d['status']}")
    version = f" v{d['version']}" if d["version"] else ""
    click.echo(f"  product: {d['dataset']}{version}  scenario: {d['scenario'] or '-'}")
    click.echo(f"  holder: {d['holder_name']} ({d['holder_code'] or d['holder']})")
    dates = [f"applied {d['applied_on']}"]
    if d["notice_start"] and d["notice_end"] and d["notice_end"] >= d["notice_start"]:
        dates.append(f"notice {d['notice_start']}..{d['notice_end']}")
    elif d["notice_start"]:
        dates.append("no notice period")
    dates.append(f"registered {d['registered_on']}" if d["registered_on"] else "not registered yet")
    click.echo("  " + ", ".join(dates))
    for o in d["objections"]:
        click.echo(f"  objection {o['id']} ({o['status']}): {o['reason']}")
    if d["ledger"]:
        steps = ", ".join(f"{step} #{idx}" for step, idx in d["ledger"].items())
        click.echo(f"  ledger entries: {steps}")


@registration.command("certificate")
@click.argument("code")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for CODE.html, CODE.pdf and CODE.proof.json.")  # fmt: skip
@click.option("--base-url", default=None, help="The portal's public URL (default NSDX_PUBLIC_URL).")
@json_option
def registration_certificate(code: str, out: Path, base_url: str | None, as_json: bool) -> None:
    """Write the certificate of registration CODE: HTML, PDF and its proof bundle (check it
    with the verifier of docs/ledger.md)."""
    from exchange import certificates

    nx = _nx(read_only=True)
    ex = nx.exchange
    from exchange.actors import Actor

    data = certificates.certificate(ex, code, actor=Actor.operator("cli"),
                                    base_url=base_url or nx.public_url(""))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    stem = out / data["code"]
    Path(f"{stem}.html").write_text(certificates.render_html(data), encoding="utf-8")
    Path(f"{stem}.pdf").write_bytes(certificates.render_pdf(data))
    proof = certificates.proof_bundle(data)
    Path(f"{stem}.proof.json").write_text(json.dumps(proof, indent=1) + "\n", encoding="utf-8")
    Path(f"{stem}.entry.json").write_bytes(data["entry"].encode())
    files = [f"{stem}.{x}" for x in ("html", "pdf", "proof.json", "entry.json")]
    if as_json:
        echo_json({"code": data["code"], "files": files, "verify_url": data["verify_url"]})
        return
    for f in files:
        click.echo(f)
    click.echo(f"check it on the portal: {data['verify_url']}")
