"""The portal's message catalogues: every message in the templates and Python files of the
portal is in the Chinese catalogue, translated, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from nsdx.web import i18n

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {
    "_": None,
    "gettext": None,
    "N_": None,
    "ngettext": (1, 2),
    "pgettext": ((1, "c"), 2),
    "Np_": ((1, "c"), 2),
    "Msg": None,  # the domain core's messages (validation.messages)
}
CORE = ("catalogue", "exchange", "ingest", "validation")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _extracted() -> set[tuple[str | None, str]]:
    out = set()
    method_map = [("nsdx/web/**.py", "python"), ("nsdx/web/templates/**.html", "jinja2")]
    method_map += [(f"{pkg}/**.py", "python") for pkg in CORE]
    options = {"nsdx/web/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    for _file, _line, msg, _comments, ctx in extract_from_dir(
        str(ROOT), method_map, options, keywords=KEYWORDS
    ):
        msgid = msg if isinstance(msg, str) else msg[0]
        if msgid:
            out.add((ctx, msgid))
    return out


def test_every_message_has_a_chinese_translation():
    po = ROOT / "nsdx/web/locale/zh_CN/LC_MESSAGES/messages.po"
    cat = read_po(po.open("rb"), locale="zh_CN")
    have = {}
    for m in cat:
        if m.id:
            msgid = m.id if isinstance(m.id, str) else m.id[0]
            have[(m.context, msgid)] = m.string if isinstance(m.string, str) else m.string[0]
    wanted = _extracted()
    assert len(wanted) > 100
    missing = sorted((k for k in wanted if not have.get(k)), key=str)
    assert missing == [], "run `make messages` and translate these in messages.po"
    for (_ctx, msgid), translated in have.items():
        if (_ctx, msgid) in wanted:
            assert set(PLACEHOLDER.findall(msgid)) == set(PLACEHOLDER.findall(translated)), msgid
    stale = sorted((k for k in have if k not in wanted), key=str)
    assert stale == [], "messages no longer used: run `make messages`"


def test_catalogue_compiles_and_translates():
    zh = i18n.translations("zh_CN")
    assert zh.ugettext("Sign in") == "登录"
    assert zh.upgettext("domain", "transport") == "交通"
    token = i18n.set_current("en")
    try:
        assert i18n.gettext("Sign in") == "Sign in"
        assert i18n.ngettext("%(num)s row", "%(num)s rows", 2) == "2 rows"
    finally:
        i18n.reset(token)
    assert i18n.gettext("Sign in") == "登录"  # Chinese by default
