"""Multipart requests to the CKAN Action API, read as a stream.

A file is written to ``<NSDX_HOME>/uploads/<random>/<name>`` only after

* the action is known and takes files (``resource_create``, ``resource_update``,
  ``resource_patch``; any other action refuses a file part with a 400 and nothing is
  written),
* the caller is authenticated (checked before the body is read), and
* the caller may add data to the dataset the fields before the file name
  (:func:`catalogue.ckan.authorize_upload`, run when the first file part begins);

it is streamed to disk in chunks and refused with a 413 past ``NSDX_UPLOAD_MAX_BYTES``
(:mod:`nsdx.web.limits`). On every failure — a refusal, a broken body, a failed action —
the folder is removed (:meth:`Received.discard`); a successful upload belongs to its job,
which removes it when it has run.
"""

from __future__ import annotations

import codecs
import shutil
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from catalogue.ckan import Upload
from catalogue.errors import CatalogueError
from validation.messages import Msg

from .limits import max_upload_bytes

MAX_FIELDS = 1000
MAX_FIELD_BYTES = 1024 * 1024
MAX_FILES = 4
MAX_NAME = 255


class UploadRefused(CatalogueError):
    status = 400


class UploadTooLarge(CatalogueError):
    status = 413


@dataclass
class Received:
    data: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)
    folder: Path | None = None

    def discard(self) -> None:
        """Remove what was written (after a refusal or a failed action)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def safe_filename(raw: str) -> str:
    """The last path segment of a client's file name, or a 400 for one that is no name
    (``..``, ``.``, empty, control characters)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    bad = (
        name in ("", ".", "..")
        or any(unicodedata.category(c)[0] == "C" for c in name)
        or len(name.encode("utf-8")) > MAX_NAME
    )
    if bad:
        shown = raw[:60]
        raise UploadRefused(
            Msg("the upload's file name %(name)s is not a file name", name=repr(shown)),
            hint=Msg(
                "name the file like data.csv (at most %(n)s bytes, no '/' or '..')", n=MAX_NAME
            ),
        )
    return name


class _Events:
    """python-multipart callbacks, recorded; the async reader acts on them."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.is_file = False
        self.field_name = ""
        self.field_bytes = bytearray()

    def on_part_begin(self) -> None:
        self.disposition, self.is_file, self.field_bytes = b"", False, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = options.get(b"name")
        if name is None:
            raise UploadRefused("a multipart part has no name", hint="send name=... per part")
        self.field_name = name.decode("utf-8", "replace")
        if b"filename" in options:
            self.is_file = True
            filename = options[b"filename"].decode("utf-8", "replace")
            self.events.append(("file", self.field_name, filename))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.is_file:
            self.events.append(("data", bytes(data[start:end])))
        else:
            if len(self.field_bytes) + (end - start) > MAX_FIELD_BYTES:
                raise UploadTooLarge(
                    f"the form field {self.field_name!r} is larger than {MAX_FIELD_BYTES} bytes",
                    hint="send large values as a file, or as JSON",
                )
            self.field_bytes.extend(data[start:end])

    def on_part_end(self) -> None:
        if self.is_file:
            self.events.append(("end",))
        else:
            self.events.append(("field", self.field_name, bytes(self.field_bytes)))


async def receive_multipart(
    request: Request,
    root: Path,
    *,
    accepts_files: bool,
    authorize: Callable[[dict], Awaitable[None]],
    action: str,
) -> Received:
    """The fields and files of a multipart request (see the module's docstring)."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadRefused(
            Msg("the multipart body has no boundary"), hint=Msg("send a valid form")
        )
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "utf-8"
    limit = max_upload_bytes()
    rec = _Events()
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": rec.on_part_begin,
            "on_header_field": rec.on_header_field,
            "on_header_value": rec.on_header_value,
            "on_header_end": rec.on_header_end,
            "on_headers_finished": rec.on_headers_finished,
            "on_part_data": rec.on_part_data,
            "on_part_end": rec.on_part_end,
        },
    )
    out = Received()
    current: IO[bytes] | None = None
    written = 0
    fields = 0
    authorized = False
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except CatalogueError:
                raise
            except Exception as e:  # python-multipart's parse errors
                raise UploadRefused(
                    f"the multipart body cannot be read: {type(e).__name__}",
                    hint="send a well-formed multipart/form-data body",
                ) from None
            pending, rec.events = rec.events, []
            for ev in pending:
                if ev[0] == "field":
                    fields += 1
                    if fields > MAX_FIELDS:
                        raise UploadRefused(f"more than {MAX_FIELDS} form fields")
                    _, name, raw = ev
                    out.data[name] = raw.decode(charset, "replace")
                elif ev[0] == "file":
                    _, name, filename = ev
                    if not accepts_files:
                        raise UploadRefused(
                            f"{action} takes no file uploads",
                            hint="upload files with resource_create or resource_update",
                        )
                    if len(out.files) >= MAX_FILES or name in out.files:
                        raise UploadRefused(Msg("at most %(n)s files, one per field", n=MAX_FILES))
                    safe = safe_filename(filename)
                    if not authorized:  # the caller's rights, before a byte is written
                        await authorize(dict(out.data))
                        authorized = True
                    if out.folder is None:
                        out.folder = root / uuid.uuid4().hex
                        await run_in_threadpool(out.folder.mkdir, parents=True, exist_ok=True)
                    path = out.folder / safe
                    current = await run_in_threadpool(path.open, "xb")
                    out.files[name] = Upload(safe, path)
                elif ev[0] == "data":
                    written += len(ev[1])
                    if written > limit:
                        raise UploadTooLarge(
                            f"the upload is larger than this server takes ({limit} bytes)",
                            hint="split the file, or ask the operator to raise "
                            "NSDX_UPLOAD_MAX_BYTES",
                            limit=limit,
                        )
                    assert current is not None
                    await run_in_threadpool(current.write, ev[1])
                elif ev[0] == "end" and current is not None:
                    await run_in_threadpool(current.close)
                    current = None
        parser.finalize()
    except BaseException:
        if current is not None:
            current.close()
        out.discard()
        raise
    if current is not None:  # the body ended inside a file part
        current.close()
        out.discard()
        raise UploadRefused(
            Msg("the multipart body ended inside a file"), hint=Msg("send it again")
        )
    return out


__all__ = ["Received", "UploadRefused", "UploadTooLarge", "receive_multipart", "safe_filename"]
