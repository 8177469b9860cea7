"""Data-resource registration (数据资源登记): no scenario, no registration; no registration,
no trade (无场景不登记、无登记不交易).

A data provider applies to register a data product — a dataset, the application scenario
it serves (:mod:`catalogue.scenarios`), a compliance statement and a pledge that its sources
are lawful; a reviewer (a user with the ``reviewer`` flag, or the operator) reviews it; an
approved application is under public notice for ``registration_notice_days`` (the trade
rules), during which anyone may lodge an objection; once the notice has ended with no
objection open (from the day after its last day), the reviewer issues the product's unique
registration code. Change,
correction and cancellation registrations of a registered product follow the same flow and
keep its code (``revision`` counts up). Every step is one ledger event in the step's own
transaction, and returns a receipt with its inclusion proof (as :mod:`exchange.trade`).

    apply ──▶ review ──▶ public notice ──(notice ended, no objection open)──▶ code issued
                 └▶ rejected      └▶ objection ──▶ dismissed (back to notice) / upheld (rejected)

Dates come from the exchange's clock (``Exchange.today``), so a test or the demo sets the
day (``Exchange.on_day``) instead of waiting for the notice to pass.

:func:`require_listable` is the exchange's one answer to "may this dataset be offered?"
(:func:`exchange.trade.create_offer` asks it), saying what is missing when it may not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from catalogue.access import DatasetFacts, may_see
from catalogue.errors import DatasetNotFound
from catalogue.models import Dataset, Organization, Scenario, ScenarioDataset
from catalogue.registry import find_dataset
from validation.messages import Msg, Term

from .actors import SELLER_ROLES, Actor, principal_of
from .context import Exchange
from .errors import ExchangeError, InvalidRequest, InvalidState, NotAllowed
from .grants import SessionGrants
from .models import Enterprise, Registration, RegistrationObjection
from .rules import MAX_INT32, bounded_int, bounded_text

KINDS = ("initial", "change", "correction", "cancellation")
PENDING = ("applied", "notice", "objected")
T = TypeVar("T")  # an application on its way
CODE_PREFIX = "NSDR"  # 南沙数据资源登记 Nansha data-resource registration


class RegistrationNotFound(ExchangeError):
    status = 404


class NotRegistered(ExchangeError):
    """A dataset that may not be offered: not registered with a scenario (yet, any more)."""

    status = 409


# -- lookups ---------------------------------------------------------------------------------


def _row(s: Session, model: type[T], key: str) -> T:
    """A row that must exist (a foreign key points at it)."""
    row = s.get(model, key)
    if row is None:  # pragma: no cover - the foreign keys keep it there
        raise RegistrationNotFound(f"{model.__name__} {key!r} is gone")
    return row


def _get(s: Session, ref: str, *, lock: bool = False) -> Registration:
    """A registration by application id, or the current record of a code. ``lock``: for a
    step that changes it — the row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL; on
    SQLite the ledger's transaction already holds the database's write lock), so two steps
    on one registration at once run one after the other, the second seeing the first's
    outcome."""
    ref = bounded_text(ref, "registration", 100).strip()
    reg = s.get(Registration, ref, with_for_update=lock or None)
    if reg is None:
        q = (
            select(Registration)
            .where(Registration.code == ref, Registration.registered_on.is_not(None))
            .order_by(Registration.revision.desc())
            .limit(1)
        )
        reg = s.scalar(q.with_for_update() if lock else q)
    if reg is None:
        raise _not_found(ref)
    return reg


def _not_found(ref: str) -> RegistrationNotFound:
    return RegistrationNotFound(
        Msg("registration %(ref)s not found", ref=repr(ref)),
        hint="`nsdx registration list` shows applications and codes",
        registration=ref,
    )


def _sees_dataset(s: Session, actor: Actor) -> Callable[[Dataset], bool]:
    """May ``actor`` see a dataset's registrations: the catalogue's one access rule
    (:func:`catalogue.access.may_see`) — a private, draft or deleted dataset's registrations
    are not public. Reviewers, auditors and the operator see every registration: they review
    and audit the register."""
    if actor.sysadmin or actor.auditor or actor.reviewer:
        return lambda ds: True
    p, grants = principal_of(s, actor), SessionGrants(s)
    return lambda ds: may_see(p, DatasetFacts.of(ds), grants)


def _seer(s: Session, actor: Actor) -> Callable[[Registration], bool]:
    """Who sees a registration on the register: whoever may see its dataset
    (:func:`_sees_dataset`) once its public notice has started; before that (awaiting review,
    or rejected at review) only the holder's members — and reviewers, auditors, the
    operator."""
    if actor.sysadmin or actor.auditor or actor.reviewer:
        return lambda reg: True
    p, dataset_seen = principal_of(s, actor), _sees_dataset(s, actor)

    def sees(reg: Registration) -> bool:
        if not dataset_seen(_row(s, Dataset, reg.dataset_id)):
            return False
        return reg.notice_start is not None or p.insider(reg.holder_id)

    return sees


def _get_seen(s: Session, ref: str, actor: Actor) -> Registration:
    """:func:`_get` for a reader: a registration the reader may not see is not found, with
    the very answer of one that does not exist."""
    reg = _get(s, ref)
    if not _seer(s, actor)(reg):
        raise _not_found(ref.strip()[:100])
    return reg


def _scenario(s: Session, name: str) -> Scenario:
    from catalogue.scenarios import ScenarioNotFound, get

    try:
        return get(s, bounded_text(name, "scenario", 100))
    except ScenarioNotFound as e:
        raise InvalidRequest(e.message, hint=e.hint, scenario=name) from None


def _uses(s: Session, sc: Scenario, ds: Dataset) -> bool:
    n = s.scalar(
        select(func.count())
        .select_from(ScenarioDataset)
        .where(ScenarioDataset.scenario_id == sc.id, ScenarioDataset.dataset_id == ds.id)
    )
    return bool(n)


def _current(s: Session, ds: Dataset) -> Registration | None:
    """The registered record of a dataset (its latest issued revision), if it is valid."""
    return s.scalar(
        select(Registration)
        .where(Registration.dataset_id == ds.id, Registration.status == "registered")
        .order_by(Registration.revision.desc())
    )


def _reviewer(actor: Actor, what: str) -> None:
    if actor.auditor and not actor.sysadmin:
        raise NotAllowed(f"{actor.name} is an auditor: auditors cannot {what}", actor=actor.name)
    if not (actor.sysadmin or actor.reviewer):
        raise NotAllowed(
            f"{actor.name} cannot {what}: only a registration reviewer may",
            hint="a reviewer is a user created with `nsdx user create NAME --reviewer`",
            actor=actor.name,
        )


def _impartial(s: Session, actor: Actor, reg: Registration, what: str) -> None:
    """A reviewer does not decide on an application of their own organisation, nor on one
    they filed themselves (a conflict of interest)."""
    holder = _row(s, Organization, reg.holder_id)
    if actor.name == reg.applied_by or holder.name in actor.roles:
        raise NotAllowed(
            f"{actor.name} cannot {what} of registration {reg.id}: "
            + (
                "they filed the application"
                if actor.name == reg.applied_by
                else f"they are a member of the holder {holder.name!r}"
            ),
            hint="another reviewer, who is not a member of the applying organisation, "
            "decides on it",
            actor=actor.name,
            registration=reg.id,
        )


def _event(ex: Exchange, s: Session, reg: Registration, step: str, data: dict, *, ref=None):
    """Append the step's ledger event; the registration remembers its index per step."""
    payload = {"registration": reg.id, "step": step, **data}
    a = ex.ledger.append(s, f"registration.{step}", payload, ref=ref)
    return a


def _receipt(ex: Exchange, a, reg_id: str, step: str) -> dict:
    import json

    a = ex.ledger.settle(a)
    with ex.ledger.transaction() as s:  # the step's index, for the record's history
        reg = _row(s, Registration, reg_id)
        reg.ledger = {**(reg.ledger or {}), step: a.index}
        if step == "issued":
            reg.ledger_index = a.index
        d = registration_dict(s, reg, full=True)
    proof = ex.ledger.inclusion(a.index, checkpoint=a.checkpoint)
    return {**d, "receipt": {"entry": json.loads(a.payload), **proof}}


def _facts(s: Session, reg: Registration) -> dict[str, Any]:
    """What every event of a registration records about the product."""
    ds = _row(s, Dataset, reg.dataset_id)
    holder = _row(s, Organization, reg.holder_id)
    ent = s.scalar(select(Enterprise).where(Enterprise.organization_id == reg.holder_id))
    sc = s.get(Scenario, reg.scenario_id) if reg.scenario_id else None
    return {
        "kind": reg.kind,
        "code": reg.code,
        "revision": reg.revision,
        "dataset": ds.name,
        "version": reg.version,
        "scenario": sc.name if sc else None,
        "holder": holder.name,
        "holder_code": ent.credit_code if ent else None,
    }


# -- the steps -------------------------------------------------------------------------------


def apply(
    ex: Exchange,
    actor: Actor,
    dataset: str,
    *,
    scenario: str | None = None,
    compliance_statement: str = "",
    legality_pledge: str = "",
    version: int | None = None,
    kind: str = "initial",
    reason: str = "",
) -> dict:
    """Apply to register ``dataset`` (initial), or to change, correct or cancel its
    registration. An admin or editor of the dataset's organisation applies; the
    organisation is the holder. Initial, change and correction applications name a
    scenario that uses the dataset, a compliance statement and a source-legality pledge;
    change, correction and cancellation ones a reason."""
    if kind not in KINDS:
        raise InvalidRequest(f"kind {kind!r} is not one of {', '.join(KINDS)}", kind=kind)
    compliance_statement = bounded_text(compliance_statement, "compliance statement", 10_000)
    legality_pledge = bounded_text(legality_pledge, "source-legality pledge", 10_000)
    reason = bounded_text(reason, "reason", 2000)
    if version is not None:
        version = bounded_int(version, "version", 1, MAX_INT32)
    if kind != "cancellation":
        missing = [
            what
            for what, v in (
                ("a scenario (--scenario)", scenario),
                ("a compliance statement (--compliance)", compliance_statement.strip()),
                ("a source-legality pledge (--pledge)", legality_pledge.strip()),
            )
            if not v
        ]
        if missing:
            raise InvalidRequest(
                f"a registration application needs {', '.join(missing)}",
                hint="无场景不登记: name the application scenario the product serves "
                "(`nsdx scenario list`), state its compliance and pledge its sources are lawful",
            )
    if kind != "initial" and not reason.strip():
        raise InvalidRequest(f"a {kind} registration needs a reason (--reason)")
    today = ex.today()
    with ex.ledger.transaction() as s:
        ds = find_dataset(s, dataset)
        if ds.organization is None:
            raise InvalidRequest(f"dataset {ds.name!r} has no owning organisation")
        holder = ds.organization
        actor.require(holder.name, SELLER_ROLES, f"apply to register dataset {ds.name!r}")
        # one application at a time per dataset: two at once on PostgreSQL wait here for
        # each other, so the second sees the first's pending application below
        s.execute(select(Dataset.id).where(Dataset.id == ds.id).with_for_update())
        current = _current(s, ds)
        pending = s.scalar(
            select(Registration).where(
                Registration.dataset_id == ds.id, Registration.status.in_(PENDING)
            )
        )
        if pending is not None:
            raise InvalidState(
                f"dataset {ds.name!r} already has a {pending.kind} application "
                f"({pending.id}, {pending.status})",
                hint="one application at a time: wait for its outcome",
                registration=pending.id,
            )
        if kind == "initial" and current is not None:
            raise InvalidState(
                f"dataset {ds.name!r} is already registered ({current.code})",
                hint="apply for a change or correction registration instead (--kind change)",
                code=current.code,
            )
        if kind != "initial" and current is None:
            raise InvalidState(
                f"dataset {ds.name!r} has no registration to {kind.rstrip('e')}e",
                hint="apply for an initial registration first",
            )
        sc = None
        if kind == "cancellation":
            sc = s.get(Scenario, current.scenario_id) if current and current.scenario_id else None
            version = current.version if current else None
        else:
            sc = _scenario(s, scenario or "")
            if not _uses(s, sc, ds):
                raise InvalidRequest(
                    f"scenario {sc.name!r} does not use dataset {ds.name!r}",
                    hint="add the dataset to the scenario's datasets (scenarios.yaml, "
                    "`nsdx scenario load`) or name the scenario it serves",
                    scenario=sc.name,
                    dataset=ds.name,
                )
        if version is None and kind != "cancellation":
            version = ds.current_version
        reg = Registration(
            kind=kind,
            code=current.code if current else None,
            revision=current.revision + 1 if current else 0,
            previous_id=current.id if current else None,
            dataset_id=ds.id,
            version=version,
            scenario_id=sc.id if sc else None,
            holder_id=holder.id,
            compliance_statement=compliance_statement
            or (current.compliance_statement if current else ""),
            legality_pledge=legality_pledge or (current.legality_pledge if current else ""),
            reason=reason,
            status="applied",
            applied_by=actor.name,
            applied_on=today,
            ledger={},
        )
        s.add(reg)
        s.flush()
        a = _event(
            ex,
            s,
            reg,
            "applied",
            {
                "actor": actor.name,
                **_facts(s, reg),
                "applied_on": today.isoformat(),
                "compliance_statement": reg.compliance_statement,
                "legality_pledge": reg.legality_pledge,
                "reason": reason,
            },
        )
        rid = reg.id
    return _receipt(ex, a, rid, "applied")


def review(ex: Exchange, actor: Actor, registration: str, *, approve: bool, note: str = "") -> dict:
    """The reviewer approves (the public notice starts today and lasts
    ``registration_notice_days``) or rejects an application."""
    note = bounded_text(note, "review note", 2000)
    _reviewer(actor, "review registrations")
    today = ex.today()
    days = ex.rules.registration_notice_days
    with ex.ledger.transaction() as s:
        reg = _get(s, registration, lock=True)
        _impartial(s, actor, reg, "review")
        if reg.status != "applied":
            raise InvalidState(
                f"registration {reg.id} is {reg.status}, not awaiting review",
                registration=reg.id,
            )
        if not approve and not note.strip():
            raise InvalidRequest("a rejection needs a note saying why (--note)")
        reg.reviewed_by = actor.name
        reg.review_note = note
        if approve:
            reg.status = "notice"
            reg.notice_start = today
            # ``days`` days of notice, today included: notice_end is its last day, on which
            # objections are still lodged; the code is issued from the day after (0: none)
            reg.notice_end = today + timedelta(days=days - 1)
        else:
            reg.status = "rejected"
            reg.ended_on = today
        a = _event(
            ex,
            s,
            reg,
            "reviewed",
            {
                "actor": actor.name,
                **_facts(s, reg),
                "decision": "approved" if approve else "rejected",
                "note": note,
                "reviewed_on": today.isoformat(),
                "notice_start": reg.notice_start.isoformat() if reg.notice_start else None,
                "notice_end": reg.notice_end.isoformat() if reg.notice_end else None,
            },
        )
        rid = reg.id
    return _receipt(ex, a, rid, "reviewed")


def lodge_objection(ex: Exchange, actor: Actor, registration: str, *, reason: str) -> dict:
    """Anyone with an account (not an auditor) objects to an application under public
    notice, with a reason; the code cannot be issued while an objection is open."""
    reason = bounded_text(reason, Msg("objection reason"), 5000)
    if not reason.strip():
        raise InvalidRequest(Msg("an objection needs a reason (--reason)"))
    if actor.auditor and not actor.sysadmin:
        raise NotAllowed(
            Msg("%(actor)s is an auditor: auditors cannot lodge objections", actor=actor.name)
        )
    if actor.anonymous:
        raise NotAllowed(
            Msg("an objection needs an account"),
            hint=Msg("sign in (or send a token) to object"),
        )
    today = ex.today()
    with ex.ledger.transaction() as s:
        reg = _get(s, registration, lock=True)
        if reg.status not in ("notice", "objected"):
            raise InvalidState(
                Msg(
                    "registration %(id)s is %(status)s: objections are lodged during its "
                    "public notice",
                    id=reg.id,
                    status=Term(reg.status, "registration-status"),
                ),
                registration=reg.id,
            )
        if reg.notice_end is not None and today > reg.notice_end:
            raise InvalidState(
                Msg(
                    "the public notice of registration %(id)s ended on %(day)s",
                    id=reg.id,
                    day=str(reg.notice_end),
                ),
                registration=reg.id,
            )
        mine = s.scalar(  # one open objection per account: no flooding the public record
            select(RegistrationObjection.id).where(
                RegistrationObjection.registration_id == reg.id,
                RegistrationObjection.lodged_by == actor.name,
                RegistrationObjection.status == "open",
            )
        )
        if mine is not None:
            raise InvalidState(
                Msg(
                    "%(actor)s already has an open objection (%(objection)s) to registration "
                    "%(id)s",
                    actor=actor.name,
                    objection=mine,
                    id=reg.id,
                ),
                hint=Msg(
                    "one open objection per account: the reviewer resolves it first; add what "
                    "is new once it is resolved"
                ),
                registration=reg.id,
                objection=mine,
            )
        o = RegistrationObjection(
            registration_id=reg.id, lodged_by=actor.name, reason=reason, lodged_on=today
        )
        s.add(o)
        reg.status = "objected"
        s.flush()
        a = _event(
            ex,
            s,
            reg,
            "objection",
            {
                "actor": actor.name,
                **_facts(s, reg),
                "objection": o.id,
                "reason": reason,
                "lodged_on": today.isoformat(),
            },
            ref=o,
        )
        rid = reg.id
    return _receipt(ex, a, rid, f"objection:{o.id}")


def resolve_objection(
    ex: Exchange, actor: Actor, objection: str, *, uphold: bool, resolution: str = ""
) -> dict:
    """The reviewer upholds an objection (the application is rejected) or dismisses it
    (with no other objection open, the application is back under notice)."""
    resolution = bounded_text(resolution, "resolution", 5000)
    if not resolution.strip():
        raise InvalidRequest("say how the objection was resolved (--resolution)")
    _reviewer(actor, "resolve objections")
    today = ex.today()
    with ex.ledger.transaction() as s:
        o = s.get(
            RegistrationObjection, bounded_text(objection, "objection", 100), with_for_update=True
        )
        if o is None:
            raise RegistrationNotFound(f"objection {objection!r} not found")
        if o.status != "open":
            raise InvalidState(f"objection {o.id} is already {o.status}")
        reg = s.get(Registration, o.registration_id, with_for_update=True)
        if reg is None:  # pragma: no cover - the foreign key keeps it there
            raise RegistrationNotFound(f"registration {o.registration_id!r} is gone")
        _impartial(s, actor, reg, "resolve an objection")
        o.status = "upheld" if uphold else "dismissed"
        o.resolution = resolution
        o.resolved_by = actor.name
        s.flush()
        still_open = s.scalar(
            select(func.count())
            .select_from(RegistrationObjection)
            .where(
                RegistrationObjection.registration_id == reg.id,
                RegistrationObjection.status == "open",
            )
        )
        if uphold:
            reg.status = "rejected"
            reg.ended_on = today
        elif not still_open:
            reg.status = "notice"
        a = _event(
            ex,
            s,
            reg,
            "objection_resolved",
            {
                "actor": actor.name,
                **_facts(s, reg),
                "objection": o.id,
                "decision": o.status,
                "resolution": resolution,
                "resolved_on": today.isoformat(),
            },
        )
        rid = reg.id
    return _receipt(ex, a, rid, f"resolved:{o.id}")


def _new_code(s: Session, year: int) -> str:
    prefix = f"{CODE_PREFIX}-{year}-"
    n = s.scalar(
        select(func.count())
        .select_from(Registration)
        .where(Registration.code.like(f"{prefix}%"), Registration.revision == 0)
    )
    return f"{prefix}{(n or 0) + 1:06d}"


def issue(ex: Exchange, actor: Actor, registration: str) -> dict:
    """After the public notice has ended with no objection open, the reviewer issues the
    registration: an initial one gets a new unique code; a change or correction takes over
    the product's code (the previous record is superseded); a cancellation ends it."""
    _reviewer(actor, "issue registrations")
    today = ex.today()
    try:
        with ex.ledger.transaction() as s:
            reg = _get(s, registration, lock=True)
            _impartial(s, actor, reg, "issue the code")
            if reg.status == "objected":
                raise InvalidState(
                    f"registration {reg.id} has an open objection: resolve it first",
                    hint="`nsdx registration show` lists the objections; "
                    "`nsdx registration resolve OBJECTION --dismiss|--uphold`",
                    registration=reg.id,
                )
            if reg.status != "notice":
                raise InvalidState(
                    f"registration {reg.id} is {reg.status}; a code is issued after review "
                    "and public notice",
                    registration=reg.id,
                )
            if reg.notice_end is None or today <= reg.notice_end:
                first = reg.notice_end + timedelta(days=1) if reg.notice_end else None
                raise InvalidState(
                    f"registration {reg.id} is under public notice until {reg.notice_end}",
                    hint=f"objections may be lodged until the end of {reg.notice_end}; "
                    f"issue the code from {first} on",
                    registration=reg.id,
                )
            prev = s.get(Registration, reg.previous_id) if reg.previous_id else None
            if reg.kind == "initial":
                reg.code = _new_code(s, today.year)
            if prev is not None:
                prev.status = "cancelled" if reg.kind == "cancellation" else "superseded"
                prev.ended_on = today
            reg.status = "cancelled" if reg.kind == "cancellation" else "registered"
            reg.registered_on = today
            if reg.kind == "cancellation":
                reg.ended_on = today
            s.flush()
            a = _event(
                ex,
                s,
                reg,
                "issued",
                {
                    "actor": actor.name,
                    **_facts(s, reg),
                    "registered_on": today.isoformat(),
                    "notice_start": reg.notice_start.isoformat() if reg.notice_start else None,
                    "notice_end": reg.notice_end.isoformat() if reg.notice_end else None,
                    "compliance_sha256": _sha(reg.compliance_statement),
                    "legality_pledge_sha256": _sha(reg.legality_pledge),
                },
                ref=reg,
            )
            rid = reg.id
    except IntegrityError:  # two codes issued at once: the unique key kept them apart
        raise InvalidState(
            "another registration took the same code at the same moment", hint="issue it again"
        ) from None
    return _receipt(ex, a, rid, "issued")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- the rule the exchange applies -----------------------------------------------------------


def require_listable(s: Session, ds: Dataset) -> Registration:
    """The registration under which ``ds`` may be offered for sale, or :class:`NotRegistered`
    saying what is missing: a scenario, a registration, the end of the public notice, the
    resolution of an objection — or that the registration was cancelled."""
    cur = _current(s, ds)
    if cur is not None:
        sc = s.get(Scenario, cur.scenario_id) if cur.scenario_id else None
        if sc is not None and _uses(s, sc, ds):
            return cur
        raise NotRegistered(
            Msg(
                "dataset %(name)s is registered (%(code)s) for scenario %(scenario)s, which no "
                "longer uses it: no scenario, no trade",
                name=repr(ds.name),
                code=cur.code,
                scenario=repr(sc.name if sc else "?"),
            ),
            hint=Msg(
                "add it back to the scenario, or apply for a change registration naming the "
                "scenario it serves: `nsdx registration apply %(name)s --kind change "
                "--scenario NAME --reason ...`",
                name=ds.name,
            ),
            dataset=ds.name,
            missing="scenario",
        )
    last = s.scalar(
        select(Registration)
        .where(Registration.dataset_id == ds.id)
        .order_by(Registration.created.desc())
    )
    rule = Msg(
        "无场景不登记、无登记不交易 (no scenario, no registration; no registration, no trade)"
    )
    apply_hint = Msg(
        "apply: `nsdx registration apply %(name)s --scenario NAME --compliance TEXT "
        "--pledge TEXT`; a reviewer reviews it, a public notice follows, then the code",
        name=ds.name,
    )
    if last is None:
        used = s.scalar(
            select(func.count())
            .select_from(ScenarioDataset)
            .where(ScenarioDataset.dataset_id == ds.id)
        )
        if not used:
            raise NotRegistered(
                Msg(
                    "dataset %(name)s cannot be offered: no application scenario uses it and "
                    "it is not registered — %(rule)s",
                    name=repr(ds.name),
                    rule=rule,
                ),
                hint=Msg(
                    "add it to a scenario (scenarios.yaml, `nsdx scenario load`), then %(apply)s",
                    apply=apply_hint,
                ),
                dataset=ds.name,
                missing="scenario",
            )
        raise NotRegistered(
            Msg(
                "dataset %(name)s cannot be offered: it is not registered — %(rule)s",
                name=repr(ds.name),
                rule=rule,
            ),
            hint=apply_hint,
            dataset=ds.name,
            missing="registration",
        )
    rejected = Msg(
        "its registration application %(id)s was rejected: %(note)s",
        id=last.id,
        note=str(last.review_note or ""),
    )
    if last.status == "rejected":  # after an objection was upheld: its resolution is why
        upheld = s.scalar(
            select(RegistrationObjection.resolution)
            .where(
                RegistrationObjection.registration_id == last.id,
                RegistrationObjection.status == "upheld",
            )
            .order_by(RegistrationObjection.created.desc())
        )
        if upheld is not None:
            rejected = Msg(
                "its registration application %(id)s was rejected: an objection was upheld "
                "(%(resolution)s)",
                id=last.id,
                resolution=str(upheld),
            )
    what: tuple[Msg, str] = {
        "applied": (
            Msg("its registration application %(id)s awaits review", id=last.id),
            "review",
        ),
        "notice": (
            Msg(
                "its registration %(id)s is under public notice until %(day)s",
                id=last.id,
                day=str(last.notice_end),
            ),
            "notice",
        ),
        "objected": (
            Msg("an objection to its registration %(id)s is open and must be resolved", id=last.id),
            "objection",
        ),
        "rejected": (
            rejected,
            "registration",
        ),
        "cancelled": (
            Msg(
                "its registration %(code)s was cancelled on %(day)s",
                code=str(last.code),
                day=str(last.ended_on),
            ),
            "cancelled",
        ),
    }.get(
        last.status,
        (
            Msg(
                "its registration %(id)s is %(status)s",
                id=last.id,
                status=Term(last.status, "registration-status"),
            ),
            "registration",
        ),
    )
    raise NotRegistered(
        Msg(
            "dataset %(name)s cannot be offered: %(what)s — %(rule)s",
            name=repr(ds.name),
            what=what[0],
            rule=rule,
        ),
        hint=apply_hint if what[1] in ("registration", "cancelled") else
        Msg("an offer can be made once the registration code is issued"),
        dataset=ds.name,
        missing=what[1],
        registration=last.id,
    )  # fmt: skip


# -- reading ---------------------------------------------------------------------------------


def registration_dict(s: Session, reg: Registration, *, full: bool = False) -> dict:
    """A registration as every surface shows it. Public: it is a public register (公示);
    ``full`` adds who lodged each objection (reviewers, the operator, auditors)."""
    ds = _row(s, Dataset, reg.dataset_id)
    holder = _row(s, Organization, reg.holder_id)
    ent = s.scalar(select(Enterprise).where(Enterprise.organization_id == reg.holder_id))
    sc = s.get(Scenario, reg.scenario_id) if reg.scenario_id else None
    objections = s.scalars(
        select(RegistrationObjection)
        .where(RegistrationObjection.registration_id == reg.id)
        .order_by(RegistrationObjection.created)
    )

    def day(d: date | None) -> str | None:
        return d.isoformat() if d else None

    return {
        "id": reg.id,
        "code": reg.code,
        "revision": reg.revision,
        "kind": reg.kind,
        "status": reg.status,
        "dataset": ds.name,
        "dataset_title": ds.title,
        "dataset_title_en": ds.title_en,
        "version": reg.version,
        "scenario": sc.name if sc else None,
        "scenario_title": sc.title if sc else None,
        "scenario_title_en": sc.title_en if sc else None,
        "holder": holder.name,
        "holder_name": ent.legal_name if ent else holder.title or holder.name,
        "holder_code": ent.credit_code if ent else None,
        "compliance_statement": reg.compliance_statement,
        "legality_pledge": reg.legality_pledge,
        "reason": reg.reason,
        "applied_by": reg.applied_by,
        "applied_on": day(reg.applied_on),
        "reviewed_by": reg.reviewed_by,
        "review_note": reg.review_note,
        "notice_start": day(reg.notice_start),
        "notice_end": day(reg.notice_end),
        "registered_on": day(reg.registered_on),
        "ended_on": day(reg.ended_on),
        "previous": reg.previous_id,
        "ledger": dict(reg.ledger or {}),
        "ledger_index": reg.ledger_index,
        "objections": [
            {
                "id": o.id,
                "reason": o.reason,
                "lodged_on": day(o.lodged_on),
                "status": o.status,
                "resolution": o.resolution,
                **({"lodged_by": o.lodged_by, "resolved_by": o.resolved_by} if full else {}),
            }
            for o in objections
        ],
    }


def show(ex: Exchange, ref: str, *, actor: Actor, full: bool = False) -> dict:
    """One registration (by application id or code: a code gives its current record), with
    the history of its code — as ``actor`` may see it (:func:`_seer`: one it may not see is
    not found)."""
    with ex.catalogue.Session() as s:
        reg = _get_seen(s, ref, actor)
        sees = _seer(s, actor)
        d = registration_dict(s, reg, full=full)
        if reg.code:
            d["history"] = [
                {
                    "id": r.id,
                    "revision": r.revision,
                    "kind": r.kind,
                    "status": r.status,
                    "registered_on": r.registered_on.isoformat() if r.registered_on else None,
                    "ledger_index": r.ledger_index,
                }
                for r in s.scalars(
                    select(Registration)
                    .where(Registration.code == reg.code)
                    .order_by(Registration.revision, Registration.created)
                )
                if sees(r)
            ]
        return d


def list_registrations(
    ex: Exchange,
    *,
    actor: Actor,
    dataset: str | None = None,
    status: str | None = None,
    scenario: str | None = None,
    full: bool = False,
) -> list[dict]:
    """The register as ``actor`` may see it (:func:`_seer`). A ``dataset`` it may not see
    is not found, exactly as one that does not exist."""
    with ex.catalogue.Session() as s:
        sees = _seer(s, actor)
        q = select(Registration).order_by(Registration.created)
        if dataset:
            dataset = bounded_text(dataset, "dataset", 200)
            try:
                ds = find_dataset(s, dataset, include_deleted=True)
            except DatasetNotFound:
                ds = None
            if ds is None or not _sees_dataset(s, actor)(ds):
                raise DatasetNotFound(dataset)
            q = q.where(Registration.dataset_id == ds.id)
        if status:
            q = q.where(Registration.status == bounded_text(status, "status", 20))
        if scenario:
            q = q.where(Registration.scenario_id == _scenario(s, scenario).id)
        return [registration_dict(s, r, full=full) for r in s.scalars(q) if sees(r)]


def registered_products(s: Session, dataset_ids: list[str]) -> dict[str, dict]:
    """The current registration of each dataset that has one (for dataset pages)."""
    out: dict[str, dict] = {}
    if not dataset_ids:
        return out
    for r in s.scalars(
        select(Registration)
        .where(Registration.dataset_id.in_(dataset_ids))
        .order_by(Registration.created)
    ):
        out[r.dataset_id] = {"id": r.id, "code": r.code, "status": r.status, "kind": r.kind}
    return out


def register_product(
    ex: Exchange,
    dataset: str,
    scenario: str,
    *,
    holder: str,
    applied_on: date,
    compliance_statement: str,
    legality_pledge: str,
    reviewer: Actor | None = None,
) -> dict:
    """The whole initial flow for one product, each step on its own day of the exchange's
    clock: applied and approved on ``applied_on``, issued the day after the notice's last
    day (Python API
    only: ``nsdx exchange demo`` replays the past this way). Returns the issued record."""
    who = Actor.for_org(holder, name=f"{holder}:registrant")
    rev = reviewer or Actor.operator("registration-reviewer")
    day = ex.on_day(applied_on)
    r = apply(
        day,
        who,
        dataset,
        scenario=scenario,
        compliance_statement=compliance_statement,
        legality_pledge=legality_pledge,
    )
    review(day, rev, r["id"], approve=True, note="材料齐全，准予公示 (complete: to public notice)")
    first = applied_on + timedelta(days=ex.rules.registration_notice_days)  # the day after
    return issue(ex.on_day(first), rev, r["id"])
