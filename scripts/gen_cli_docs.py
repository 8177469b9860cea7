"""Write docs/cli.md from the CLI's own --help texts (run by `make docs`; a test checks it)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent


def walk(cmd: click.Command, path: list[str], ctx: click.Context):
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None:
                continue
            sub_ctx = click.Context(sub, info_name=name, parent=ctx)
            yield from walk(sub, [*path, name], sub_ctx)


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from nsdx.cli import cli

    root_ctx = click.Context(cli, info_name="nsdx", terminal_width=100, max_content_width=100)
    out = [
        "# nsdx command-line reference",
        "",
        "Generated from `--help` by `make docs` (scripts/gen_cli_docs.py); "
        "`tests/test_docs.py` fails when it is out of date.",
        "",
    ]
    for path, cmd, ctx in walk(cli, ["nsdx"], root_ctx):
        ctx.terminal_width = ctx.max_content_width = 100
        out += [f"## `{' '.join(path)}`", "", "```", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    (ROOT / "docs" / "cli.md").write_text(render(), encoding="utf-8")
    print("wrote docs/cli.md")
