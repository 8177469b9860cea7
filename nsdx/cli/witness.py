"""`nsdx witness`: run a C2SP tlog-witness that cosigns the exchange ledger's checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from . import fail

_HOME_HELP = "The witness directory (key, logs, state); default $NSDX_WITNESS_HOME or ./witness."


def _home(home: str | None) -> Path:
    return Path(home or os.environ.get("NSDX_WITNESS_HOME") or "witness")


@click.group()
def witness() -> None:
    """Run a ledger witness: cosign checkpoints that extend the last one (C2SP tlog-witness)."""


@witness.command("init")
@click.option("--name", required=True, help="The witness's name, e.g. audit.nansha.example/w1.")
@click.option(
    "--log",
    "logs",
    multiple=True,
    help="A log's verifier key to witness (`nsdx audit pubkey` on the exchange); repeatable.",
)
@click.option("--home", default=None, help=_HOME_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init(name: str, logs: tuple[str, ...], home: str | None, as_json: bool) -> None:
    """Create a witness: a new cosigning key (kept in the directory, mode 600) and its logs."""
    from exchange.witness import WitnessConfigError, init_witness

    path = _home(home)
    try:
        key = init_witness(path, name, list(logs))
    except WitnessConfigError as e:
        fail(e, as_json)
        return
    if as_json:
        click.echo(json.dumps({"home": str(path), "verifier_key": key.verifier.text}))
    else:
        click.echo(key.verifier.text)
        click.echo(
            f"witness created in {path}; publish the verifier key above to the exchange "
            "and to whoever checks cosignatures",
            err=True,
        )


@witness.command("pubkey")
@click.option("--home", default=None, help=_HOME_HELP)
def pubkey(home: str | None) -> None:
    """Print the witness's verifier key (cosignature/v1, algorithm 0x04)."""
    from exchange.witness import Witness, WitnessConfigError

    try:
        click.echo(Witness(_home(home)).verifier_key)
    except WitnessConfigError as e:
        fail(e)


@witness.command("serve")
@click.option("--home", default=None, help=_HOME_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="TCP port.")
@click.option("--log-level", default="info", show_default=True)
def serve(home: str | None, host: str, port: int, log_level: str) -> None:
    """Serve POST /add-checkpoint (C2SP tlog-witness) for the logs in the witness directory.

    One process per witness directory: the state is also locked against other processes."""
    import uvicorn

    from exchange.witness import WitnessConfigError
    from nsdx.web import server
    from nsdx.web.witness import create_witness_app

    try:
        app = create_witness_app(_home(home))
    except WitnessConfigError as e:
        fail(e)
        return
    w = app.state.witness
    click.echo(
        f"witness {w.key.name} serving on http://{host}:{port}/add-checkpoint "
        f"for {len(w.logs)} log(s)",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=server.TimedH11Protocol,
        timeout_keep_alive=int(server.setting("NSDX_KEEP_ALIVE")),
        limit_concurrency=int(server.setting("NSDX_MAX_CONNECTIONS")),
        timeout_graceful_shutdown=int(server.setting("NSDX_SHUTDOWN_TIMEOUT")),
    )
