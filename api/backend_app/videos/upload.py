"""Streaming a multipart upload to disk with a size limit enforced as the bytes arrive, and
a limit on how long the client may send nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

logger = logging.getLogger(__name__)

FIELD_LIMIT = 4096  # bytes of a non-file form field
MAX_FIELDS = 20


class UploadRejected(Exception):
    def __init__(self, status_code: int, detail: str, *, body_unread: bool = False) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        # Refused before the whole body arrived: the connection closes rather than waiting
        # for the rest of a body nobody will read.
        self.headers = {"Connection": "close"} if body_unread else None


class InvalidFile(Exception):
    """No file, or an empty one: a 422 on the `file` field."""


@dataclass
class ReceivedUpload:
    path: Path
    size: int
    filename: str
    fields: dict[str, str] = field(default_factory=dict)


async def receive_file(
    request: Request, *, directory: Path, max_bytes: int, idle_seconds: float, file_field: str = "file"
) -> ReceivedUpload:
    """Write the `file_field` part to `directory` under a generated name; never trust its name.

    A client that sends nothing for `idle_seconds` is cut off with 408; a client that goes
    away is one log line. Either way the partial file is removed.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UploadRejected(415, "Send the video as multipart/form-data with a 'file' field.", body_unread=True)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise UploadRejected(413, f"The video is larger than the {max_bytes} byte limit.", body_unread=True)

    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    destination = directory / f"{uuid.uuid4().hex}.upload"
    state: dict = {"headers": {}, "name": None, "filename": None, "file": None, "size": 0, "field": b"", "fields": {}}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header_field"] = state.get("header_field", b"") + data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["header_value"] = state.get("header_value", b"") + data[start:end]

    def on_header_end() -> None:
        state["headers"][state.pop("header_field", b"").lower()] = state.pop("header_value", b"")

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["name"] = disposition.get(b"name", b"").decode(errors="replace")
        state["filename"] = disposition.get(b"filename", b"").decode(errors="replace") or None
        if state["name"] == file_field and state["file"] is None:
            state["file"] = destination.open("wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if state["name"] == file_field and state["file"] is not None and not state.get("file_done"):
            state["size"] += len(chunk)
            if state["size"] > max_bytes:
                raise UploadRejected(413, f"The video is larger than the {max_bytes} byte limit.", body_unread=True)
            # Small synchronous writes: the event loop waits microseconds per chunk.
            state["file"].write(chunk)
        else:
            state["field"] += chunk
            if len(state["field"]) > FIELD_LIMIT:
                raise UploadRejected(413, "A form field is too long.", body_unread=True)

    def on_part_end() -> None:
        if state["name"] == file_field and state["file"] is not None:
            state["file_done"] = True
            state["upload_name"] = state["filename"] or "upload"
        elif state["name"]:
            if len(state["fields"]) >= MAX_FIELDS:
                raise UploadRejected(413, "Too many form fields.", body_unread=True)
            state["fields"][state["name"]] = state["field"].decode(errors="replace")
        state.update(headers={}, name=None, filename=None, field=b"")

    parser = MultipartParser(
        options[b"boundary"],
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    chunks = request.stream()
    try:
        while True:
            try:
                async with asyncio.timeout(idle_seconds):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        _close_and_remove(state, destination)
        raise UploadRejected(400, "The multipart body is malformed.", body_unread=True) from None
    except TimeoutError:
        _close_and_remove(state, destination)
        raise UploadRejected(
            408, f"Nothing arrived for {idle_seconds:g} seconds; send the upload again.", body_unread=True
        ) from None
    except ClientDisconnect:
        _close_and_remove(state, destination)
        logger.info("upload abandoned: the client disconnected after %d bytes of the file", state["size"])
        raise UploadRejected(400, "The client disconnected before the upload was complete.") from None
    except BaseException:
        _close_and_remove(state, destination)
        raise
    if state["file"] is not None and not state.get("file_done"):
        _close_and_remove(state, destination)
        raise UploadRejected(400, "The upload ended before the file was complete.")
    if state["file"] is None:
        raise InvalidFile("No 'file' field in the upload.")
    state["file"].close()
    if state["size"] == 0:
        destination.unlink(missing_ok=True)
        raise InvalidFile("The uploaded file is empty.")
    return ReceivedUpload(
        destination, state["size"], clean_filename(state.get("upload_name", "upload")), state["fields"]
    )


def clean_filename(name: str) -> str:
    """The client's file name as harmless metadata: no folders, no control characters."""
    base = os.path.basename(name.replace("\\", "/"))
    return "".join(ch for ch in base if ch.isprintable())[:255] or "upload"


def _close_and_remove(state: dict, destination: Path) -> None:
    if state["file"] is not None:
        state["file"].close()
    destination.unlink(missing_ok=True)
