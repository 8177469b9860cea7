"""Text encoding of source files: detection, normalisation, and precise decode errors.

``detect_encoding(path)`` answers one of ``utf-8``, ``utf-8-sig``, ``gb18030``, ``cp1252`` or
``latin-1``. How it decides:

1. A byte-order mark wins (UTF-8 BOM -> ``utf-8-sig``; UTF-16/32 BOMs are refused with a hint).
2. The file is scanned (C speed, ``bytes.isascii``) for its first non-ASCII bytes; a pure-ASCII
   file is ``utf-8``. Otherwise a window of up to 1 MiB starting there is decoded with an
   *incremental* decoder, so a multi-byte character cut at the window end is not an error.
3. Strict UTF-8 success -> ``utf-8``.
4. Otherwise GB18030 against Latin-1 by plausibility: real GBK/GB18030 Chinese text is made
   almost entirely of GB2312 characters (both bytes >= 0xA1). Latin-1 text misread as GB18030
   (the Montreal file: ``Br\\xe9beuf`` -> ``Br` + U+9B8B ...``) pairs an accented byte with the
   following ASCII letter, which is outside GB2312. We decode as GB18030 and require that at
   least 80 % of the non-ASCII characters re-encode to GB2312; else it is Latin-1, reported as
   ``cp1252`` when the sample uses the 0x80-0x9F bytes cp1252 defines (curly quotes, euro sign)
   and ``latin-1`` otherwise.

Declared encodings (``encoding:`` in datasets.yaml) are normalised by :func:`normalise_encoding`
(``gbk``/``gb2312`` -> ``gb18030``, a superset that decodes them identically).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..errors import SourceError

SAMPLE_BYTES = 1 << 20
_SCAN_CHUNK = 4 << 20
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ALIASES = {
    "utf8": "utf-8",
    "utf-8": "utf-8",
    "utf_8": "utf-8",
    "utf-8-sig": "utf-8-sig",
    "utf8-sig": "utf-8-sig",
    "utf_8_sig": "utf-8-sig",
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "gb18030": "gb18030",
    "cp936": "gb18030",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
    "l1": "latin-1",
    "cp1252": "cp1252",
    "windows-1252": "cp1252",
}
DECODE_HINT = "declare `encoding: gb18030` (or latin-1) in datasets.yaml"

Opener = Callable[[], BinaryIO]


def normalise_encoding(name: str) -> str:
    """Canonical codec name for a declared encoding; SourceError if Python does not know it."""
    key = name.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return codecs.lookup(key).name
    except LookupError:
        raise SourceError(
            f"unknown encoding {name!r}",
            hint="use auto, utf-8, utf-8-sig, gb18030, latin-1, cp1252 or another Python codec name",
        ) from None


def arrow_encoding(encoding: str) -> str:
    """The name to give pyarrow's ReadOptions(encoding=...): UTF-8 needs no transcoding."""
    return "utf8" if encoding in ("utf-8", "utf-8-sig") else encoding


def detect_encoding(path: str | Path | Opener, *, label: str | None = None) -> str:
    """Guess the encoding of a file (a path, or a callable returning a fresh binary stream)."""
    opener: Opener = (lambda: open(path, "rb")) if isinstance(path, str | Path) else path
    label = label or str(path)
    with opener() as f:
        head = f.read(4)
        for bom, name in _BOMS:
            if head.startswith(bom):
                if name != "utf-8-sig":
                    raise SourceError(
                        f"{name.upper()} text is not supported",
                        file=label,
                        hint="re-save the file as UTF-8 (or declare a supported encoding)",
                    )
                return name
        window = _first_non_ascii_window(f, head)
    if window is None:
        return "utf-8"
    return guess_from_bytes(window)


def _first_non_ascii_window(f: BinaryIO, head: bytes) -> bytes | None:
    buf = head + f.read(_SCAN_CHUNK - len(head))
    while buf:
        if not buf.isascii():
            start = next(i for i, b in enumerate(buf) if b >= 0x80)
            # back up to a line start so the window starts on a character boundary
            line_start = buf.rfind(b"\n", 0, start) + 1
            window = buf[line_start : line_start + SAMPLE_BYTES]
            if len(window) < SAMPLE_BYTES:
                window += f.read(SAMPLE_BYTES - len(window))
            return window
        buf = f.read(_SCAN_CHUNK)
    return None


def guess_from_bytes(sample: bytes) -> str:
    """utf-8 | gb18030 | cp1252 | latin-1 for a byte sample (possibly cut mid-character)."""
    if _decodes(sample, "utf-8") or _utf8_then_other(sample):
        return "utf-8"
    if _decodes(sample, "gb18030") and _looks_chinese(sample):
        return "gb18030"
    if any(0x80 <= b <= 0x9F for b in sample) and _decodes(sample, "cp1252"):
        return "cp1252"
    return "latin-1"


def _utf8_then_other(sample: bytes) -> bool:
    """Whole lines of UTF-8 text (with characters beyond ASCII) before the first byte that is
    not UTF-8: a file whose encoding changes part-way. It is read as UTF-8, so the reader
    stops at the first line in the other encoding and names it — never decoded whole as
    Latin-1, which would publish every character of both parts wrongly."""
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        good = sample[: sample.rfind(b"\n", 0, e.start) + 1]
        return bool(good) and not good.isascii()
    return True


def _decodes(sample: bytes, encoding: str) -> bool:
    try:
        codecs.getincrementaldecoder(encoding)("strict").decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _looks_chinese(sample: bytes) -> bool:
    text = codecs.getincrementaldecoder("gb18030")("strict").decode(sample, final=False)
    wide = [ch for ch in text if ord(ch) >= 0x80]
    if not wide:
        return False
    common = 0
    for ch in wide:
        try:
            ch.encode("gb2312")
            common += 1
        except UnicodeEncodeError:
            pass
    return common / len(wide) >= 0.8


def locate_decode_error(opener: Opener, encoding: str, *, start: int = 0) -> tuple[int, int, bytes]:
    """(byte offset, 1-based line, bad bytes) of the first undecodable byte, scanning from
    ``start``; (-1, -1, b"") when the whole stream decodes."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset, lines = start, 1
    with opener() as f:
        if start:
            prefix = f.read(start)
            lines += prefix.count(b"\n")
        while True:
            chunk = f.read(1 << 20)
            final = not chunk
            pending = decoder.getstate()[0] or b""
            try:
                decoder.decode(chunk, final=final)
            except UnicodeDecodeError as e:
                # e.start is relative to the bytes held back from the last chunk + this chunk
                data = pending + chunk
                bad_at = min(e.start, len(data))
                lines += data[len(pending) : bad_at].count(b"\n")
                return offset - len(pending) + bad_at, lines, data[bad_at : bad_at + 4]
            if final:
                return -1, -1, b""
            lines += chunk.count(b"\n")
            offset += len(chunk)


def decode_error(opener: Opener, encoding: str, label: str, *, start: int = 0) -> SourceError:
    """A SourceError naming the byte offset and line where ``encoding`` fails."""
    offset, line, bad = locate_decode_error(opener, encoding, start=start)
    if offset < 0:
        return SourceError(
            f"text could not be decoded as {encoding}",
            file=label,
            hint=DECODE_HINT,
        )
    return SourceError(
        f"cannot decode byte(s) {bad.hex(' ')} at byte offset {offset} as {encoding}",
        file=label,
        line=line,
        hint=DECODE_HINT,
    )
