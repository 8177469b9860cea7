"""The portal's languages: Chinese (zh_CN) first, English one click away.

Every label, facet value, message and error page goes through gettext with the message
catalogues in ``nsdx/web/locale/<lang>/LC_MESSAGES/messages.po`` (msgids are English).
The ``.po`` files are compiled in memory with Babel when the app starts, so what is served
is always what is in the repository; ``make messages`` re-extracts the msgids from the
templates and Python files (``babel.cfg``) and updates the catalogues, and a test checks
that every msgid has a Chinese translation.

The language is the ``nsdx_lang`` cookie (``zh_CN`` by default), set by ``/lang/<code>``.
The current language lives in a context variable set per request by
:class:`LanguageMiddleware`, so templates rendered concurrently never mix languages.
"""

from __future__ import annotations

import contextvars
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from validation.messages import Term

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"zh_CN": "中文", "en": "English"}
DEFAULT = "zh_CN"
COOKIE = "nsdx_lang"
HTML_LANG = {"zh_CN": "zh-Hans", "en": "en"}

_lang: contextvars.ContextVar[str] = contextvars.ContextVar("nsdx_lang", default=DEFAULT)


def N_(message: str) -> str:  # noqa: N802 - the gettext convention: marked, not translated
    return message


def Np_(context: str, message: str) -> tuple[str, str]:  # noqa: N802
    return context, message


# Facet values with a translation (others are shown as they are stored).
DOMAINS = [
    Np_("domain", "transport"),
    Np_("domain", "environment"),
    Np_("domain", "economy"),
    Np_("domain", "energy"),
    Np_("domain", "society"),
    Np_("domain", "education"),
    Np_("domain", "health"),
    Np_("domain", "urban-management"),
    Np_("domain", "culture"),
]
ACCESS = [Np_("access", "open"), Np_("access", "restricted")]
PII_KINDS = [
    Np_("pii", "plate"),
    Np_("pii", "phone"),
    Np_("pii", "id_card"),
    Np_("pii", "name"),
    Np_("pii", "address"),
    Np_("pii", "free_text"),
]
COLUMN_TYPES = [
    Np_("type", "string"),
    Np_("type", "integer"),
    Np_("type", "int32"),
    Np_("type", "float"),
    Np_("type", "boolean"),
    Np_("type", "timestamp"),
    Np_("type", "timestamptz"),
    Np_("type", "date"),
    Np_("type", "time"),
    Np_("type", "decimal"),
    Np_("type", "geometry"),
]
PII_TREATMENTS = [Np_("treatment", "hmac"), Np_("treatment", "drop"), Np_("treatment", "keep")]
CHECK_KINDS = [
    Np_("check", "not_null"),
    Np_("check", "unique"),
    Np_("check", "between"),
    Np_("check", "in_set"),
    Np_("check", "regex"),
    Np_("check", "length"),
    Np_("check", "row_count"),
    Np_("check", "min"),
    Np_("check", "max"),
    Np_("check", "mean"),
    Np_("check", "distinct"),
    Np_("check", "freshness"),
    Np_("check", "json"),
]
ROLES = [Np_("role", "admin"), Np_("role", "editor"), Np_("role", "member")]
JOB_STATES = [
    Np_("job", "queued"),
    Np_("job", "running"),
    Np_("job", "finished"),
    Np_("job", "failed"),
]
OFFER_STATES = [Np_("offer", "open"), Np_("offer", "withdrawn")]
TOKEN_STATES = [Np_("token", "active"), Np_("token", "revoked"), Np_("token", "expired")]
SCENARIO_STATES = [
    Np_("scenario-status", "proposed"),
    Np_("scenario-status", "open"),
    Np_("scenario-status", "closed"),
]
REGISTRATION_STATES = [
    Np_("registration-status", "applied"),
    Np_("registration-status", "notice"),
    Np_("registration-status", "objected"),
    Np_("registration-status", "rejected"),
    Np_("registration-status", "registered"),
    Np_("registration-status", "superseded"),
    Np_("registration-status", "cancelled"),
]
REGISTRATION_KINDS = [
    Np_("registration-kind", "initial"),
    Np_("registration-kind", "change"),
    Np_("registration-kind", "correction"),
    Np_("registration-kind", "cancellation"),
]
# GB/T 43697-2024 data grades (a dataset's classification, read by the cross-border rules)
GRADES = [Np_("grade", "general"), Np_("grade", "important"), Np_("grade", "core")]
OBJECTION_STATES = [
    Np_("objection-status", "open"),
    Np_("objection-status", "upheld"),
    Np_("objection-status", "dismissed"),
]


@cache
def translations(lang: str) -> NullTranslations:
    po = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf)


def current() -> str:
    return _lang.get()


def set_current(lang: str) -> contextvars.Token:
    return _lang.set(lang if lang in LANGUAGES else DEFAULT)


def reset(token: contextvars.Token) -> None:
    _lang.reset(token)


def gettext(message: str, **kw) -> str:
    s = translations(_lang.get()).ugettext(message)
    return s % kw if kw else s


def ngettext(singular: str, plural: str, n: int, **kw) -> str:
    s = translations(_lang.get()).ungettext(singular, plural, n)
    kw.setdefault("num", n)
    return s % kw


def pgettext(context: str, message: str, **kw) -> str:
    s = translations(_lang.get()).upgettext(context, message)
    return s % kw if kw else s


def npgettext(context: str, singular: str, plural: str, n: int, **kw) -> str:
    s = translations(_lang.get()).unpgettext(context, singular, plural, n)
    kw.setdefault("num", n)
    return s % kw


_ = gettext


def core(message: object) -> str:
    """A message from the domain core in the current language: a
    :class:`validation.messages.Msg` through its message id and parameters, any other text
    through the catalogue as it is (a constant core message is its own msgid); text with no
    translation stays English."""
    if message is None:
        return ""
    tr = translations(_lang.get())
    if isinstance(message, Term):
        if message.context:
            shown = tr.upgettext(message.context, message.msgid)
        else:
            shown = tr.ugettext(message.msgid)
        return str(message) if shown == message.msgid else shown  # untranslated: as written
    template = getattr(message, "template", None)
    if template is None:
        return tr.ugettext(str(message))
    params = {  # a parameter may be a core message or a word of the core itself
        k: core(v) if isinstance(v, Term) or getattr(v, "template", None) is not None else v
        for k, v in (getattr(message, "params", None) or {}).items()
    }
    s = tr.ugettext(template)
    try:
        return s % params if params else s
    except (KeyError, ValueError, TypeError):  # a broken translation: the English text
        return str(message)


def lang_of(scope_or_cookies) -> str:
    """The language a request asked for: its ``nsdx_lang`` cookie, else Chinese."""
    cookies = scope_or_cookies
    lang = cookies.get(COOKIE) if cookies else None
    return lang if lang in LANGUAGES else DEFAULT


class LanguageMiddleware:
    """Sets the current language for the request from its ``nsdx_lang`` cookie."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import HTTPConnection

        token = set_current(lang_of(HTTPConnection(scope).cookies))
        try:
            await self.app(scope, receive, send)
        finally:
            reset(token)


def install(env) -> None:
    """Give a Jinja2 environment ``_``/``gettext``/``ngettext``/``pgettext`` (new style:
    auto-escaped, ``%(name)s`` placeholders) and the current language."""
    env.add_extension("jinja2.ext.i18n")

    env.install_gettext_callables(
        gettext, ngettext, newstyle=True, pgettext=pgettext, npgettext=npgettext
    )
    env.filters["core"] = core
    env.globals["current_lang"] = current
    env.globals["html_lang"] = lambda: HTML_LANG[current()]
    env.globals["LANGUAGES"] = LANGUAGES


__all__ = [
    "ACCESS",
    "COOKIE",
    "DEFAULT",
    "DOMAINS",
    "LANGUAGES",
    "LanguageMiddleware",
    "N_",
    "core",
    "gettext",
    "install",
    "ngettext",
    "pgettext",
    "translations",
]
