"""Portal sign-in: passwords (argon2id), server-side sessions and the failed sign-in
throttle. The same users and roles as the API: a session stands for a
:class:`~catalogue.auth.Principal` exactly as an API token does.

* Passwords are hashed with argon2-cffi's ``PasswordHasher`` (argon2id, its default
  parameters, rehashed on sign-in when those change). Set or reset with
  ``nsdx user create NAME --password-stdin`` / ``nsdx user password NAME``.
* A session is a random secret in an HttpOnly cookie; only its sha256 is stored (table
  ``web_sessions``). It lasts :data:`IDLE` after the last request and at most
  :data:`ABSOLUTE` after sign-in. Sign-out deletes the row.
* The throttle counts failures per account (``user:NAME``) and per client address
  (``ip:ADDR``) in a :data:`WINDOW`; at :data:`MAX_PER_ACCOUNT` / :data:`MAX_PER_IP`
  failures the key is locked for :data:`LOCKOUT`. Counters live in the database table
  ``signin_failures``, so a restart does not reset them. While locked, even the right
  password is refused (so a guesser learns nothing), and the message says when to retry.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.orm import Session

from .auth import Accounts, InvalidInput, NotAuthorized, Principal
from .errors import CatalogueError
from .models import SignInFailure, User, WebSession, utcnow

MIN_PASSWORD, MAX_PASSWORD = 10, 1024
IDLE = timedelta(hours=12)
ABSOLUTE = timedelta(days=7)
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
MAX_PER_ACCOUNT = 5
MAX_PER_IP = 20
LIMITS = (MAX_PER_ACCOUNT, MAX_PER_IP)  # of the keys user:NAME and ip:ADDR

_hasher = PasswordHasher()
# verified against when the user does not exist, so both answers take as long
_DUMMY = _hasher.hash("nsdx-no-such-user-" + secrets.token_hex(8))


class WrongPassword(NotAuthorized):
    """Unknown user or wrong password (one message for both: names are not revealed)."""

    status = 401


class SignInThrottled(CatalogueError):
    """Too many failed sign-ins for this account or from this address (HTTP 429)."""

    status = 429

    def __init__(self, until: datetime) -> None:
        self.until = until
        minutes = max(1, int((until - utcnow()).total_seconds() // 60) + 1)
        self.minutes = minutes
        super().__init__(
            f"too many failed sign-ins: try again in {minutes} minutes",
            hint="an administrator can reset the password with `nsdx user password NAME`",
            retry_after=minutes * 60,
        )


def check_password_rules(password: str) -> None:
    if not isinstance(password, str) or not (MIN_PASSWORD <= len(password) <= MAX_PASSWORD):
        raise InvalidInput(
            {"password": [f"Must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long."]}
        )


def set_password(accounts: Accounts, user: str, password: str) -> None:
    """Set or reset ``user``'s portal password; signs out their existing sessions."""
    check_password_rules(password)
    h = _hasher.hash(password)
    with accounts.cat.Session.begin() as s:
        u = accounts._user(s, user)
        u.password_hash = h
        s.execute(delete(WebSession).where(WebSession.user_id == u.id))


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    secret: str  # the cookie value: shown once, only its hash is stored
    principal: Principal
    expires: datetime


def _locked(s: Session, keys: list[str], now: datetime) -> datetime | None:
    until = None
    for row in s.scalars(select(SignInFailure).where(SignInFailure.key.in_(keys))):
        if row.locked_until and row.locked_until > now:
            until = max(until or row.locked_until, row.locked_until)
    return until


def _claim(accounts: Accounts, key: str, now: datetime) -> int:
    """Count one attempt for ``key`` atomically, before the password is checked (one
    upsert, committed at once, so parallel requests cannot all slip under the limit nor
    collide on the first insert); the attempts in the current window, this one included."""
    cat = accounts.cat
    t = SignInFailure
    # a new window, or a lock that has run out: counting starts again
    fresh = or_(
        t.window_start < now - WINDOW,
        and_(t.locked_until.is_not(None), t.locked_until <= now),
    )
    values = {"key": key, "failures": 1, "window_start": now, "locked_until": None}
    counted = {
        "failures": case((fresh, 1), else_=t.failures + 1),
        "window_start": case((fresh, now), else_=t.window_start),
        "locked_until": case((fresh, None), else_=t.locked_until),
    }
    # the same upsert in each dialect's words (their Insert classes are distinct types)
    if cat.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = (
            pg_insert(t)
            .values(values)
            .on_conflict_do_update(index_elements=[t.key], set_=counted)
            .returning(t.failures)
        )
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = (
            sqlite_insert(t)
            .values(values)
            .on_conflict_do_update(index_elements=[t.key], set_=counted)
            .returning(t.failures)
        )
    with cat.Session.begin() as s:
        return int(s.execute(stmt).scalar_one())


def sign_in(accounts: Accounts, name: str, password: str, *, client: str = "-") -> SignedIn:
    """Check ``name``'s password and open a session, or raise :class:`WrongPassword` /
    :class:`SignInThrottled`. ``client`` is the caller's address (for the throttle). Each
    attempt is counted before the password is checked; a success clears the account's
    count and takes its own attempt back from the client's."""
    name = (name or "").strip().lower()[:100]
    password = (password or "")[:MAX_PASSWORD]
    keys = [f"user:{name}", f"ip:{client[:150]}"]
    now = utcnow()
    with accounts.cat.Session() as s:
        until = _locked(s, keys, now)
    if until is not None:
        raise SignInThrottled(until)
    tries = [_claim(accounts, k, now) for k in keys]
    over = [k for k, n, lim in zip(keys, tries, LIMITS, strict=True) if n > lim]
    if over:
        with accounts.cat.Session.begin() as s:
            for k in over:
                row = s.get(SignInFailure, k)
                if row is not None and not row.locked_until:
                    row.locked_until = now + LOCKOUT
            until = _locked(s, keys, now) or now + LOCKOUT
        raise SignInThrottled(until)
    with accounts.cat.Session.begin() as s:
        u = s.scalar(select(User).where(User.name == name))
        stored = u.password_hash if u is not None and u.state == "active" else None
        ok = False
        try:
            ok = _hasher.verify(stored or _DUMMY, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or u is None or stored is None:
            for k, n, lim in zip(keys, tries, LIMITS, strict=True):
                if n >= lim:
                    row = s.get(SignInFailure, k)
                    if row is not None:
                        row.locked_until = now + LOCKOUT
            failed = True
        else:
            failed = False
            s.execute(delete(SignInFailure).where(SignInFailure.key == keys[0]))
            s.execute(
                update(SignInFailure)
                .where(SignInFailure.key == keys[1], SignInFailure.failures > 0)
                .values(failures=SignInFailure.failures - 1)
            )
            if _hasher.check_needs_rehash(stored):
                u.password_hash = _hasher.hash(password)
            secret = secrets.token_urlsafe(32)
            expires = now + IDLE
            s.add(
                WebSession(
                    id=_hash_secret(secret),
                    user_id=u.id,
                    created=now,
                    last_seen=now,
                    expires=expires,
                )
            )
            principal = Accounts._principal(s, u)
    if failed:  # the counters above are committed; now say no
        raise WrongPassword("wrong user name or password", hint="check both; names are lower-case")
    return SignedIn(secret, principal, expires)


def session_principal(accounts: Accounts, secret: str | None) -> Principal | None:
    """The principal of a live session, its expiry extended; None when there is no such
    session or it expired (the row is then removed)."""
    if not secret or len(secret) > 100:
        return None
    now = utcnow()
    with accounts.cat.Session() as s:
        ws = s.get(WebSession, _hash_secret(secret))
        if ws is None:
            return None
        if ws.expires <= now or now - ws.created > ABSOLUTE:
            s.delete(ws)
            s.commit()
            return None
        u = s.get(User, ws.user_id)
        if u is None or u.state != "active":
            return None
        if now - ws.last_seen > timedelta(minutes=1):  # one write a minute, not per request
            ws.last_seen = now
            ws.expires = min(now + IDLE, ws.created + ABSOLUTE)
            s.commit()
        return Accounts._principal(s, u)


def sign_out(accounts: Accounts, secret: str | None) -> None:
    if not secret or len(secret) > 100:
        return
    with accounts.cat.Session.begin() as s:
        s.execute(delete(WebSession).where(WebSession.id == _hash_secret(secret)))
        # expired sessions of anyone are swept here too: the table stays small
        s.execute(delete(WebSession).where(WebSession.expires <= utcnow()))


__all__ = [
    "SignInThrottled",
    "SignedIn",
    "WrongPassword",
    "check_password_rules",
    "session_principal",
    "set_password",
    "sign_in",
    "sign_out",
]
