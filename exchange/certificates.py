"""Registration certificates (数据资源登记证书): one data dict, rendered as HTML and as PDF.

The certificate carries the registration code, the product (dataset, version, scenario),
the holder, the dates, the ledger index of the ``registration.issued`` event and that
event's inclusion proof against a signed checkpoint — in the exact JSON shape the
standard-library verifier of docs/ledger.md checks — plus the URL (and its QR code) of the
portal page where anyone, without an account, sees the registration's current status.

The PDF is drawn with fpdf2 (pure Python) in a CJK TrueType font found on the machine:
``NSDX_CJK_FONT`` (a .ttf/.ttc/.otf file), else fontconfig's choice for Chinese
(``fc-match :lang=zh-cn``; Debian's ``fonts-wqy-microhei``, which
``scripts/install-browser.sh`` installs). Without one the PDF is refused with what to
install; the HTML certificate needs no font.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from datetime import UTC, date, datetime, time
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .actors import Actor
from .context import Exchange
from .errors import ExchangeError, InvalidState
from .ledger.canonical import canonical_json
from .models import Registration
from .registration import _get_seen, registration_dict

STATUS_TEXT = {
    "registered": ("有效", "valid"),
    "superseded": ("已被变更/更正登记取代", "superseded by a change or correction"),
    "cancelled": ("已注销", "cancelled"),
}
KIND_TEXT = {
    "initial": ("首次登记", "initial registration"),
    "change": ("变更登记", "change registration"),
    "correction": ("更正登记", "correction registration"),
    "cancellation": ("注销登记", "cancellation registration"),
}


class FontMissing(ExchangeError):
    """No CJK font for the PDF certificate."""

    status = 503


def certificate(ex: Exchange, ref: str, *, actor: Actor, base_url: str = "") -> dict[str, Any]:
    """The certificate of a registration (a code gives its current record; an application
    id a given record, once issued), as ``actor`` may see it: the certificate of a dataset
    it may not see (private, draft, deleted) is not found."""
    with ex.catalogue.Session() as s:
        reg = _get_seen(s, ref, actor)
        if reg.registered_on is None:
            raise InvalidState(
                f"registration {reg.id} is {reg.status}: a certificate exists once its code "
                "is issued",
                registration=reg.id,
            )
        d = registration_dict(s, reg)
        latest = s.scalar(
            select(Registration.id)
            .where(Registration.code == reg.code, Registration.registered_on.is_not(None))
            .order_by(Registration.revision.desc())
        )
    index = d["ledger_index"]
    if index is None:
        raise InvalidState(f"registration {d['id']} has no ledger entry yet; try again")
    proof = ex.ledger.inclusion(index)
    entry = ex.ledger.entry(index)
    try:
        key = ex.signer.verifier_key
    except ExchangeError:
        key = None
    url = f"{base_url.rstrip('/')}/registration/{d['code']}"
    zh, en = STATUS_TEXT.get(d["status"], (d["status"], d["status"]))
    kzh, ken = KIND_TEXT[d["kind"]]
    return {
        **d,
        "current": latest == d["id"],
        "status_text": zh,
        "status_text_en": en,
        "kind_text": kzh,
        "kind_text_en": ken,
        "notice_text": _notice_text(d),
        "proof": proof,
        # the leaf's exact bytes (RFC 8785 canonical JSON is one text per value)
        "entry": canonical_json(entry["payload"]).decode(),
        "verifier_key": key,
        "verify_url": url,
        "qr_svg": _qr(url).svg_inline(scale=3, dark="#0b2e3c"),
    }


def proof_bundle(data: dict) -> dict[str, Any]:
    """The certificate's ``proof.json``: the inclusion proof against the signed checkpoint
    and the ledger entry it proves. The standard-library script of docs/ledger.md checks
    the proof (``check_proof.py proof.json entry.json``); being a receipt in the form
    ``nsdx/verify_receipt.py`` reads, the same file is also checked with the checkpoint's
    signature (``python3 verify_receipt.py proof.json --log-key KEY``)."""
    return {**data["proof"], "entry": json.loads(data["entry"])}


def _qr(url: str):
    import segno

    return segno.make(url or "nsdx", error="m")


# -- HTML ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _env():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("exchange", "templates"), autoescape=select_autoescape(["html"])
    )


def render_html(data: dict) -> str:
    """A standalone HTML certificate (both languages side by side, no external files)."""
    return _env().get_template("certificate.html").render(c=data, proof_json=_proof_json(data))


def _proof_json(data: dict) -> str:
    return json.dumps(data["proof"], indent=1, ensure_ascii=False)


# -- PDF -------------------------------------------------------------------------------------


def _notice_text(d: dict[str, Any]) -> str:
    """The public notice period as the certificate prints it: a policy with no notice
    period (0 days) has none, not an end before its start."""
    start, end = d.get("notice_start"), d.get("notice_end")
    if not start:
        return "—"
    if not end or end < start:
        return "无 none"
    return f"{start} – {end}"


def cjk_font() -> Path:
    """A font file with Chinese glyphs: NSDX_CJK_FONT, else fontconfig's pick."""
    env = os.environ.get("NSDX_CJK_FONT")
    if env:
        p = Path(env)
        if not p.is_file():
            raise FontMissing(f"NSDX_CJK_FONT={env}: no such font file")
        return p
    fc = shutil.which("fc-match")
    if fc:
        try:
            out = subprocess.run(
                [fc, "-f", "%{file}", ":lang=zh-cn"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and Path(out).is_file() and _has_cjk(Path(out)):
            return Path(out)
    raise FontMissing(
        "no Chinese font found for the PDF certificate",
        hint="install one (`sudo sh scripts/install-browser.sh` installs fonts-wqy-microhei) "
        "or set NSDX_CJK_FONT to a .ttf/.ttc file; the HTML certificate needs none",
    )


def _has_cjk(p: Path) -> bool:
    from fontTools.ttLib import TTCollection, TTFont

    try:
        font = TTCollection(str(p)).fonts[0] if p.suffix.lower() == ".ttc" else TTFont(str(p))
        return 0x5357 in font.getBestCmap()  # 南
    except Exception:  # noqa: BLE001 - any unreadable font is simply not used
        return False


def render_pdf(data: dict) -> bytes:
    """The certificate as a one-page A4 PDF (embedded CJK font subset, QR code)."""
    from fpdf import FPDF

    font = cjk_font()
    pdf = FPDF(format="A4")
    pdf.set_title(f"数据资源登记证书 {data['code']}")
    pdf.set_author("nsdx")
    # dated the registration's day: the same record gives the same PDF
    pdf.set_creation_date(datetime.combine(date.fromisoformat(data["registered_on"]), time(), UTC))
    pdf.add_page()
    pdf.add_font("cjk", "", str(font))
    pdf.set_draw_color(11, 79, 108)
    pdf.set_line_width(0.8)
    pdf.rect(8, 8, 194, 281)
    pdf.set_font("cjk", size=20)
    pdf.cell(0, 14, "数据资源登记证书", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=11)
    pdf.cell(0, 7, "Data-resource registration certificate", align="C",
             new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    pdf.ln(4)
    qr = io.BytesIO()
    _qr(data["verify_url"]).save(qr, kind="png", scale=4, border=2)
    qr.seek(0)
    pdf.image(qr, x=160, y=40, w=36, h=36)
    rows = [
        ("登记编号 Code", f"{data['code']}  (rev. {data['revision']})"),
        ("登记类型 Kind", f"{data['kind_text']} {data['kind_text_en']}"),
        ("状态 Status", f"{data['status_text']} {data['status_text_en']}"),
        ("数据产品 Product", f"{data['dataset_title'] or data['dataset']}"),
        ("", f"{data['dataset_title_en'] or ''} [{data['dataset']}"
             + (f" v{data['version']}" if data["version"] else "") + "]"),
        ("应用场景 Scenario", f"{data['scenario_title'] or '—'}"),
        ("", f"{data['scenario_title_en'] or ''} [{data['scenario'] or ''}]"),
        ("持有人 Holder", data["holder_name"]),
        ("信用代码 Credit code", data["holder_code"] or "—"),
        ("申请日期 Applied", data["applied_on"] or ""),
        ("公示期 Public notice", data["notice_text"]),
        ("登记日期 Registered", data["registered_on"] or ""),
        ("终止日期 Ended", data["ended_on"] or "—"),
        ("账本序号 Ledger index", str(data["ledger_index"])),
    ]  # fmt: skip
    for label, value in rows:
        pdf.set_font("cjk", size=9)
        pdf.cell(45, 7, label)
        pdf.set_font("cjk", size=10)
        pdf.multi_cell(100, 7, value, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    p = data["proof"]
    pdf.set_font("cjk", size=9)
    pdf.multi_cell(
        0,
        5,
        f"包含证明 Inclusion proof (RFC 9162): entry {p['index']} of a tree of "
        f"{p['tree_size']} entries\nleaf hash {p['leaf_hash']}\nroot {p['root']}\n"
        + "\n".join(f"  {h}" for h in p["proof"]),
        align="L",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(2)
    pdf.multi_cell(0, 5, "签名检查点 Signed checkpoint (C2SP):\n" + p["checkpoint"].strip(),
                   align="L", new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    if data.get("verifier_key"):
        pdf.multi_cell(0, 5, "验证公钥 Verifier key: " + data["verifier_key"],
                       align="L", new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    pdf.ln(2)
    pdf.set_font("cjk", size=10)
    pdf.multi_cell(
        0,
        6,
        "扫码或访问以下网址核验（无需账号） Check it, no account needed:\n" + data["verify_url"],
        align="L",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    return bytes(pdf.output())
