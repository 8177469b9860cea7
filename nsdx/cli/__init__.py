"""The `nsdx` command. Commands are thin: open the core, call one function, render.

Heavy libraries (pyarrow, duckdb, great-expectations, SQLAlchemy) are imported inside the
commands so that `nsdx --help` answers at once.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import click

# group name -> module that defines it (loaded only when the group is used)
_LAZY = {
    "ingest": ("nsdx.cli.data", "ingest"),
    "datasets": ("nsdx.cli.data", "datasets"),
    "query": ("nsdx.cli.data", "query"),
    "samples": ("nsdx.cli.data", "samples"),
    "storage": ("nsdx.cli.data", "storage"),
    "gc": ("nsdx.cli.data", "gc"),
    "serve": ("nsdx.cli.serve", "serve"),
    "worker": ("nsdx.cli.serve", "worker"),
    "user": ("nsdx.cli.admin", "user"),
    "org": ("nsdx.cli.admin", "org"),
    "token": ("nsdx.cli.admin", "token"),
    "catalogue": ("nsdx.cli.admin", "catalogue"),
    "exchange": ("nsdx.cli.exchange", "exchange"),
    "audit": ("nsdx.cli.exchange", "audit"),
    "scenario": ("nsdx.cli.registration", "scenario"),
    "registration": ("nsdx.cli.registration", "registration"),
    "witness": ("nsdx.cli.witness", "witness"),
    "iceberg": ("nsdx.cli.iceberg", "iceberg"),
    "ledger": ("nsdx.cli.ledger", "ledger"),
}
_HELP = {
    "ingest": "Read, validate, convert to Parquet and publish datasets (ID... or --all).",
    "datasets": "List and show catalogue entries.",
    "query": "Run SQL over published data.",
    "samples": "Seeded sample data for Nansha (deterministic, no downloads).",
    "storage": "Check the configured object storage.",
    "gc": "Remove staging leftovers older than a threshold.",
    "serve": "Run the HTTP server: CKAN Action API (/api/3/action/), DCAT (/catalog.jsonld), "
    "OpenAPI (/openapi.json) and the web portal.",
    "worker": "Run background jobs (uploads, re-ingests) from the PostgreSQL job queue.",
    "user": "Create and list users, set portal passwords.",
    "org": "Create organisations and manage their members.",
    "token": "Create, list and revoke API tokens.",
    "catalogue": "Push to and harvest from other CKAN portals.",
    "exchange": "Offers, orders, payments, grants, deliveries and refunds.",
    "audit": "Verify the exchange ledger, print proofs, compute rewards.",
    "scenario": "Application scenarios (应用场景): load, list, show and check them.",
    "registration": "Data-resource registration (数据资源登记): apply, review, notice, code, "
    "certificate.",
    "iceberg": "Open published tables as Apache Iceberg tables: sync, show, which.",
    "ledger": "Export the ledger as static tiles; check a receipt offline.",
    "witness": "Run a ledger witness: cosign checkpoints that extend the last one (C2SP "
    "tlog-witness).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(_LAZY))

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in _LAZY:
            return cmd
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        # from _HELP, so that `nsdx --help` imports no command module (tests/test_docs.py
        # keeps _HELP equal to each command's own first help line)
        with formatter.section("Commands"):
            formatter.write_dl([(n, _HELP[n]) for n in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nsdx")
def cli() -> None:
    """nsdx — Nansha open dataset registry and data exchange (南沙开放数据目录与数据交易).

    Configuration comes from NSDX_HOME, NSDX_DATABASE_URL, NSDX_STORAGE_URL, NSDX_DATASETS
    and NSDX_PII_KEY (all optional; see the README).
    """


def _known_errors() -> tuple[type[BaseException], ...]:
    """The errors nsdx raises on purpose: :class:`validation.errors.NsdxError`, the base of
    every package's errors (looked up, not imported: no package loaded, nothing to catch)."""
    m = sys.modules.get("validation.errors")
    return (m.NsdxError,) if m is not None else ()


def fail(err: BaseException, as_json: bool = False) -> None:
    """Print an error the way users read it (or as JSON) and exit 1."""
    if as_json:
        payload = err.to_dict() if hasattr(err, "to_dict") else {"message": str(err)}
        click.echo(json.dumps({"error": payload}, ensure_ascii=False, default=str), err=True)
    else:
        click.secho(f"Error: {getattr(err, 'message', str(err))}", fg="red", err=True)
        hint = getattr(err, "hint", None)
        if hint:
            click.echo(f"  hint: {hint}", err=True)
        if getattr(err, "transient", False):
            click.echo(
                "  (a transient fault: the same command can succeed once it is fixed)", err=True
            )
    sys.exit(1)


def main() -> None:
    """The console script: run the command, then leave without tearing the interpreter down."""
    try:
        _main()
    except SystemExit as e:
        _exit(e.code)
    _exit(0)


def _exit(code: object) -> None:
    """Exit like ``sys.exit(code)`` but skip freeing every module and object one by one (a
    third of a second after an ingest; the operating system frees the process at once):
    other threads are waited for and exit handlers run (workers let go, databases closed,
    temporary files removed) as at a normal exit, and stdout/stderr are flushed — output that
    cannot be written is an error, as it is for Python (exit 120), except a closed pipe
    (`nsdx ... | head`)."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    status = 0 if code is None else code if isinstance(code, int) else 1
    import atexit  # noqa: PLC0415
    import threading  # noqa: PLC0415

    # what the interpreter does first at exit: join non-daemon threads (a private API)
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            pass
        except (OSError, ValueError) as e:
            if stream is sys.stdout:
                os.write(2, f"Error: could not write the output: {e}\n".encode())
            status = 120
    os._exit(status)


def _main() -> None:
    try:
        code = cli.main(standalone_mode=False)  # ctx.exit(n) comes back as n
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:
        if isinstance(e, _known_errors()):
            fail(e, as_json="--json" in sys.argv)
        from ingest.errors import as_transient  # noqa: PLC0415

        if (transient := as_transient(e)) is not None:  # the environment, not a bug: exit 1
            fail(transient, as_json="--json" in sys.argv)
        if os.environ.get("NSDX_DEBUG"):
            raise
        # a bug, or a state nsdx does not expect: one line, not a traceback
        message = f"unexpected {type(e).__name__}: {e}"
        hint = (
            "this is likely a bug; run again with NSDX_DEBUG=1 for the traceback and "
            "report it (for ledger commands, run `nsdx audit verify` first)"
        )
        if "--json" in sys.argv:  # --json is always JSON, errors included
            payload = {"error": "InternalError", "message": message, "hint": hint}
            click.echo(json.dumps({"error": {**payload, "transient": False}}), err=True)
        else:
            click.secho(f"Error: {message}", fg="red", err=True)
            click.echo(f"  hint: {hint}", err=True)
        sys.exit(2)
