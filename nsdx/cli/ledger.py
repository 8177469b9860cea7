"""`nsdx ledger`: the exchange ledger as C2SP tlog-tiles, and the offline receipt check."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .exchange import _ex, json_option
from .render import echo_json


@click.group()
def ledger() -> None:
    """Export the ledger as static tiles; check a receipt offline."""


@ledger.command("export-tiles")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option(
    "--entries",
    is_flag=True,
    help="Also write the entry bundles (they name the parties and amounts: for officials).",
)
@json_option
def export_tiles_cmd(dest: str, entries: bool, as_json: bool) -> None:
    """Write the checkpoint and tiles (C2SP tlog-tiles) under DEST, for any web server.

    DEST then holds `checkpoint` (the latest witnessed checkpoint, else the latest signed
    one) and `tile/...`; serve it as a URL prefix, or hand the folder over as it is. Run it
    again as the log grows: full tiles already there are kept, the checkpoint is written
    last.
    """
    from exchange.ledger.tiles import export_tiles
    from exchange.witness.published import published_checkpoint

    ex = _ex(read_only=True)
    note = published_checkpoint(ex.ledger, ex.home)
    r = export_tiles(ex.ledger, note, Path(dest), entries=entries)
    if as_json:
        echo_json({**r.to_dict(), "path": str(dest)})
        return
    click.echo(
        f"tiles of tree size {r.tree_size} in {dest}: {r.written} written, {r.kept} full "
        f"tiles already there" + (" (with entry bundles)" if r.entries else "")
    )


@ledger.command("verify-tiles")
@click.argument("dest", type=click.Path(exists=True, file_okay=False))
@click.option("--log-key", required=True, help="The exchange's verifier key (`nsdx audit pubkey`).")
@click.option("--witness-key", "witness_keys", multiple=True, help="A witness verifier key.")
@click.option("--quorum", type=int, default=0, show_default=True, help="Cosignatures needed.")
@json_option
def verify_tiles_cmd(
    dest: str, log_key: str, witness_keys: tuple[str, ...], quorum: int, as_json: bool
) -> None:
    """Check a whole folder of tiles against its signed checkpoint (no database needed).

    For an official auditing an export or a mirror: the checkpoint's signature and
    cosignatures, every tile against the ones below it and the root, and every entry bundle
    present against the leaf hashes. Exits 1 naming each problem.
    """
    from exchange.ledger.tiles import verify_tiles

    r = verify_tiles(Path(dest), log_key, list(witness_keys), quorum)
    if as_json:
        echo_json(r.to_dict())
    elif r.ok:
        click.secho(
            f"✓ {r.tiles} tiles and {r.entry_bundles} entry bundles match the checkpoint at "
            f"size {r.tree_size}"
            + (f", cosigned by {', '.join(r.cosigners)}" if r.cosigners else ""),
            fg="green",
        )
    else:
        for p in r.problems:
            click.echo(f"  {p}", err=True)
    if not r.ok:
        sys.exit(1)


@ledger.command(
    "verify-receipt",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def verify_receipt_cmd(args: tuple[str, ...]) -> None:
    """Check a receipt offline against tiles and witness keys (nsdx/verify_receipt.py).

    The same program as the one-file verifier; `nsdx ledger verify-receipt --help` lists
    its options (RECEIPT --tiles DIR-or-URL --log-key KEY [--witness-key KEY ...]).
    """
    from nsdx.verify_receipt import main

    sys.exit(main(list(args)))
