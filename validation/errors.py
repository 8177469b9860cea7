"""Errors raised by the validation package, and :class:`NsdxError`, the base of every error
nsdx raises on purpose.

``NsdxError`` lives here because validation is the lowest layer (see the import-linter
contract in pyproject.toml): every other package may import it, and this one imports none of
them. Each package keeps its own thin base class (``ValidationPackageError`` here,
``IngestError``, ``CatalogueError``, ``ExchangeError``), so callers can catch one package's
errors or, with ``NsdxError``, all of them (as the CLI does).

The one error shape: every error carries

* ``status`` — the HTTP status a surface answers with (400 by default: an error raised on
  purpose describes something the caller can change; server-side conditions say 5xx);
* ``code`` — a stable machine-readable name (the class name unless a class sets one);
* ``hint`` — what to do next;
* ``transient`` — whether retrying the same request may succeed (dlt's terminal/transient
  split);

plus structured fields. Each surface renders them through one function per dialect (the
CKAN envelope, the plain JSON API, Delta Sharing, the HTML page, the CLI: see
``nsdx.web.errors`` and ``nsdx.cli.fail``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .messages import Msg, Term


class NsdxError(Exception):
    """Base class of every error nsdx raises on purpose: a message, a hint, structured fields."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "NsdxError"
    transient: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "code" not in cls.__dict__:
            cls.code = cls.__name__

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def to_dict(self) -> dict:
        """The plain JSON shape: ``error`` (the code), ``message``, ``hint``, ``transient``
        and the structured fields."""
        return {
            "error": self.code,
            "message": self.message,
            "hint": self.hint,
            "transient": self.transient,
            **{k: v for k, v in self.fields.items() if v is not None},
        }


class ValidationPackageError(NsdxError):
    """Base class of everything the validation package raises on purpose."""


class ExpectationConfigError(ValidationPackageError):
    """An entry of ``expectations:`` in datasets.yaml cannot be turned into an expectation.

    Raised when the validator is built, before any data is read.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int,
        key: str | None = None,
        dataset_id: str | None = None,
        file: str | None = None,
        hint: str | None = None,
    ) -> None:
        at = {"file": file or "datasets.yaml", "i": index, "message": message}
        if dataset_id and key:
            text = Msg(
                "%(file)s: dataset %(id)s: expectations[%(i)s] (%(key)s): %(message)s",
                id=repr(dataset_id),
                key=repr(key),
                **at,
            )
        elif dataset_id:
            text = Msg("%(file)s: dataset %(id)s: expectations[%(i)s]: %(message)s",
                       id=repr(dataset_id), **at)  # fmt: skip
        elif key:
            text = Msg("%(file)s: expectations[%(i)s] (%(key)s): %(message)s", key=repr(key), **at)
        else:
            text = Msg("%(file)s: expectations[%(i)s]: %(message)s", **at)
        super().__init__(text, hint=hint, index=index, key=key, dataset_id=dataset_id, file=file)
        self.index, self.key, self.dataset_id, self.file = index, key, dataset_id, file
        self.reason = message  # without the place: what a form shows beside the entry


class PiiPolicyError(ValidationPackageError):
    """A personal-data treatment is not allowed for this dataset (e.g. ``keep`` on open data)."""

    def __init__(self, message: str, *, columns: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint, columns=columns)
        self.columns = columns


class UndeclaredPersonalData(ValidationPackageError):
    """Personal data was found in columns that datasets.yaml does not declare as ``pii:``."""

    def __init__(self, findings: list, *, dataset_id: str | None = None) -> None:
        self.findings = list(findings)
        lines = [
            Msg(
                "column %(column)s: %(count)s value(s) that look like %(kind)s (e.g. %(sample)s)",
                column=repr(f.column),
                count=f.count,
                kind=Term(f.kind, "pii"),
                sample=f.sample_masked,
            )
            for f in self.findings
        ]
        hint = "; ".join(
            f"declare `pii: {f.kind}` (and optionally `pii_treatment: drop`) on column "
            f"{f.column} in datasets.yaml"
            for f in self.findings
        )
        found: str = lines[0] if lines else ""
        for line in lines[1:]:
            found = Msg("%(before)s\n  %(line)s", before=found, line=line)
        super().__init__(
            Msg(
                "dataset %(id)s holds undeclared personal data (PIPL):\n  %(found)s",
                id=repr(dataset_id),
                found=found,
            )
            if dataset_id
            else Msg("the data holds undeclared personal data (PIPL):\n  %(found)s", found=found),
            hint=hint,
            dataset_id=dataset_id,
            findings=[f.to_dict() for f in self.findings],
        )
        self.dataset_id = dataset_id


class ValidationFailed(ValidationPackageError):
    """The data did not meet its expectations and ``on_invalid`` does not allow publishing."""

    def __init__(self, report: Any, *, hint: str | None = None) -> None:
        failed = ", ".join(f"{k} ({v})" for k, v in report.failures_by_expectation.items())
        super().__init__(
            Msg(
                "dataset %(id)s failed validation: %(failed)s",
                id=repr(report.dataset_id),
                failed=failed,
            ),
            hint=hint
            or Msg(
                "read the validation report; fix the source, relax the expectation, or declare "
                "`on_invalid: quarantine_rows` / `warn` in datasets.yaml"
            ),
            dataset_id=report.dataset_id,
            failures=dict(report.failures_by_expectation),
        )
        self.report = report
        self.report_file: Any = None  # where the kept HTML report is, on the server

    def for_clients(self, page: str) -> None:
        """Name ``page`` (the report's page on the portal) instead of the kept report's
        file: a server path never reaches a client."""
        where, self.report_file = self.report_file, None
        if where is None:
            return
        if isinstance(self.hint, Msg) and "kept" in self.hint.params:  # the pipeline's hint
            self.hint = Msg(self.hint.template, **{**self.hint.params, "kept": page})


# Bounds on what an error answer echoes back: a message quoting a hostile id (a 404 for a
# 15 KB order id sent 30 KB back; a 4 MB JSON body could be echoed whole) is cut.
MAX_MESSAGE = 500
MAX_FIELD = 200


def bounded_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bounded_value(value: Any, depth: int = 0) -> Any:
    """A structured error field with every string cut to MAX_FIELD characters and every
    list to 20 items."""
    if isinstance(value, str):
        return bounded_text(value, MAX_FIELD)
    if depth > 3:
        return None
    if isinstance(value, list | tuple):
        return [bounded_value(v, depth + 1) for v in list(value)[:20]]
    if isinstance(value, dict):
        return {
            bounded_text(str(k), 100): bounded_value(v, depth + 1)
            for k, v in list(value.items())[:50]
        }
    return value
