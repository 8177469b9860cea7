"""Account and federation commands: user, org, token, catalogue (push/harvest).

Each command opens the core (catalogue.auth.Accounts, catalogue.federation) and calls one
function: the Action API calls the same ones.
"""

from __future__ import annotations

import sys

import click

from .render import echo_json, table

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _accounts(read_only: bool = False):
    """Accounts of this deployment; ``read_only``: it must exist, nothing is created."""
    from nsdx.core import Nsdx

    return Nsdx(read_only=read_only).accounts


# -- users ------------------------------------------------------------------------------
@click.group()
def user() -> None:
    """Create and list users, set portal passwords."""


@user.command("create")
@click.argument("name")
@click.option("--sysadmin", is_flag=True, help="May do anything.")
@click.option("--auditor", is_flag=True, help="Read-only access to every exchange record.")
@click.option(
    "--reviewer", is_flag=True, help="Reviews data-resource registrations (nsdx registration)."
)
@click.option("--fullname", default="", help="Display name.")
@click.option("--email", default="", help="Contact address.")
@click.option(
    "--password-stdin",
    "password_stdin",
    is_flag=True,
    help="Read a portal sign-in password from standard input (first line).",
)
@click.option(
    "--password",
    "ask_password",
    is_flag=True,
    help="Ask for a portal sign-in password at the terminal (not echoed).",
)
@json_option
def user_create(
    name: str,
    sysadmin: bool,
    auditor: bool,
    reviewer: bool,
    fullname: str,
    email: str,
    password_stdin: bool,
    ask_password: bool,
    as_json: bool,
) -> None:
    """Create user NAME (with a portal password when --password or --password-stdin)."""
    from catalogue.signin import check_password_rules, set_password

    password = _read_password(password_stdin, ask_password)
    if password is not None:
        check_password_rules(password)  # before the user exists: nothing half-done
    acc = _accounts()
    u = acc.create_user(
        name, sysadmin=sysadmin, auditor=auditor, reviewer=reviewer, fullname=fullname, email=email
    )
    if password is not None:
        set_password(acc, name, password)
    if as_json:
        echo_json(u)
    else:
        flags = [f for f in ("sysadmin", "auditor", "reviewer") if u[f]]
        click.echo(f"created user {u['name']}" + (f" ({', '.join(flags)})" if flags else ""))


def _read_password(from_stdin: bool, ask: bool) -> str | None:
    """A password from the first line of stdin or a prompt; never from argv (it would be
    in the shell history and the process list)."""
    if from_stdin and ask:
        raise click.UsageError("give --password or --password-stdin, not both")
    if from_stdin or ask:
        return _password(from_stdin)
    return None


def _password(from_stdin: bool) -> str:
    """The first line of stdin, or what the user types (twice) at the prompt."""
    if from_stdin:
        line = sys.stdin.readline()  # click 8.5 deprecates get_text_stream
        return line.rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user.command("password")
@click.argument("name")
@click.option(
    "--password-stdin",
    "password_stdin",
    is_flag=True,
    help="Read the new password from standard input (first line) instead of asking.",
)
def user_password(name: str, password_stdin: bool) -> None:
    """Set or reset NAME's portal password (asked at the terminal); signs out their sessions."""
    from catalogue.signin import set_password

    password = _password(password_stdin)
    set_password(_accounts(), name, password)
    click.echo(f"password set for {name}; their portal sessions were signed out")


@user.command("list")
@json_option
def user_list(as_json: bool) -> None:
    """Every user with their flags."""
    users = _accounts(read_only=True).users()
    if as_json:
        echo_json(users)
        return
    table(
        [
            (
                u["name"],
                u["fullname"],
                "yes" if u["sysadmin"] else "",
                "yes" if u["auditor"] else "",
            )
            for u in users
        ],
        ["name", "full name", "sysadmin", "auditor"],
    )


@user.command("show")
@click.argument("name")
@json_option
def user_show(name: str, as_json: bool) -> None:
    """One user with their organisations and roles."""
    u = _accounts(read_only=True).user(name)
    if as_json:
        echo_json(u)
        return
    click.echo(f"{u['name']}  sysadmin: {u['sysadmin']}  auditor: {u['auditor']}")
    for m in u["organizations"]:
        click.echo(f"  {m['name']}: {m['role']}")


# -- organisations -----------------------------------------------------------------------
@click.group()
def org() -> None:
    """Create organisations and manage their members."""


@org.command("create")
@click.argument("name")
@click.option("--title", default=None, help="Display title (default: NAME).")
@click.option("--description", default="", help="What the organisation publishes.")
@json_option
def org_create(name: str, title: str | None, description: str, as_json: bool) -> None:
    """Create organisation NAME."""
    o = _accounts().create_org(name, title=title, description=description)
    if as_json:
        echo_json(o)
    else:
        click.echo(f"created organisation {o['name']} ({o['title']})")


@org.command("list")
@json_option
def org_list(as_json: bool) -> None:
    """Every organisation with its dataset count."""
    from catalogue.auth import SYSTEM

    orgs = _accounts(read_only=True).orgs(SYSTEM)
    if as_json:
        echo_json(orgs)
        return
    table(
        [(o["name"], o["title"], o["package_count"]) for o in orgs], ["name", "title", "datasets"]
    )


@org.command("add-member")
@click.argument("org_name", metavar="ORG")
@click.argument("user_name", metavar="USER")
@click.option(
    "--role",
    type=click.Choice(["admin", "editor", "member"]),
    default="member",
    show_default=True,
    help="admin and editor publish; member reads private datasets.",
)
@json_option
def org_add_member(org_name: str, user_name: str, role: str, as_json: bool) -> None:
    """Give USER a ROLE in ORG (changes the role if USER is already a member)."""
    m = _accounts().add_member(org_name, user_name, role)
    if as_json:
        echo_json(m)
    else:
        click.echo(f"{m['user']} is now {m['role']} of {m['organization']}")


@org.command("remove-member")
@click.argument("org_name", metavar="ORG")
@click.argument("user_name", metavar="USER")
def org_remove_member(org_name: str, user_name: str) -> None:
    """Remove USER from ORG."""
    _accounts().remove_member(org_name, user_name)
    click.echo(f"removed {user_name} from {org_name}")


@org.command("members")
@click.argument("org_name", metavar="ORG")
@json_option
def org_members(org_name: str, as_json: bool) -> None:
    """The members of ORG and their roles."""
    from catalogue.auth import SYSTEM

    o = _accounts(read_only=True).org_show(org_name, SYSTEM)
    if as_json:
        echo_json(o["users"])
        return
    table([(u["name"], u["capacity"]) for u in o["users"]], ["user", "role"])


# -- tokens ------------------------------------------------------------------------------
@click.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command("create")
@click.option("--user", "user_name", required=True, help="The user the token acts as.")
@click.option("--expires", type=float, default=None, help="Days until it expires (default: never).")
@click.option("--name", default="", help="A label to recognise the token by.")
def token_create(user_name: str, expires: float | None, name: str) -> None:
    """Create a token and print ONLY the token on stdout (it is not shown again)."""
    secret, info = _accounts().create_token(user_name, expires_days=expires, name=name)
    click.echo(secret)
    click.echo(
        f"token {info['id']} for {info['user']}"
        + (f", expires {info['expires']}" if info["expires"] else ", does not expire"),
        err=True,
    )


@token.command("list")
@click.option("--user", "user_name", default=None, help="Only this user's tokens.")
@json_option
def token_list(user_name: str | None, as_json: bool) -> None:
    """Tokens (never their secrets) with status active, expired or revoked."""
    tokens = _accounts(read_only=True).tokens(user_name)
    if as_json:
        echo_json(tokens)
        return
    table(
        [
            (t["id"], t["user"], t["name"], t["status"], t["expires"] or "-", t["last_used"] or "-")
            for t in tokens
        ],
        ["id", "user", "name", "status", "expires", "last used"],
    )


@token.command("revoke")
@click.argument("token_or_id")
@json_option
def token_revoke(token_or_id: str, as_json: bool) -> None:
    """Revoke a token given its id (see `nsdx token list`) or the token itself."""
    t = _accounts().revoke_token(token_or_id)
    if as_json:
        echo_json(t)
    else:
        click.echo(f"revoked token {t['id']} of {t['user']}")


# -- federation --------------------------------------------------------------------------
@click.group()
def catalogue() -> None:
    """Push to and harvest from other CKAN portals."""


@catalogue.command("push")
@click.option("--to", "url", required=True, help="Base URL of the other CKAN portal.")
@click.option("--token", required=True, help="An API token on the other portal.")
@click.option("--owner-org", default=None, help="Organisation there (default: ours, created).")
@click.argument("ids", nargs=-1)
@json_option
def catalogue_push(
    url: str, token: str, owner_org: str | None, ids: tuple[str, ...], as_json: bool
):
    """Create or update our datasets' metadata on another CKAN portal (all, or IDS)."""
    from catalogue.federation import push
    from nsdx.core import Nsdx

    nx = Nsdx()
    report = push(
        nx.catalogue, url, token, ids=list(ids) or None, owner_org=owner_org, site=nx.public_url()
    )
    _report(report, as_json)


@catalogue.command("harvest")
@click.option("--from", "url", required=True, help="Base URL of the other CKAN portal.")
@click.option("--token", default=None, help="An API token there (for private datasets).")
@click.option("--q", default=None, help="Only datasets matching this package_search query.")
@json_option
def catalogue_harvest(url: str, token: str | None, q: str | None, as_json: bool):
    """Import another CKAN portal's dataset metadata (and organisations) into ours."""
    from catalogue.federation import harvest
    from nsdx.core import Nsdx

    report = harvest(Nsdx().catalogue, url, token=token, q=q)
    _report(report, as_json)


def _report(report: dict, as_json: bool) -> None:
    if as_json:
        echo_json(report)
        return
    for k in ("created", "updated", "skipped", "failed"):
        names = report.get(k) or []
        click.echo(
            f"{k}: {len(names)}" + (f" ({', '.join(map(str, names[:10]))})" if names else "")
        )
    if report.get("failed"):
        raise SystemExit(1)
