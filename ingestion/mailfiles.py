"""Importing saved email: an mbox file or a folder of ``.eml`` files, parsed like IMAP mail.

Each message becomes a RawMessage keyed by its normalised Message-ID (or the fallback hash), so
importing the same mail twice adds nothing. ``received_at`` is the date of the top-most
``Received`` header (when the district's server got it), else the ``Date`` header, else the
date of the mbox ``From`` line. A message with no headers or no date at all is reported with
its position to ``on_bad(position, reason)`` and skipped; it never stops the import.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from ingestion.base import RawMessage
from ingestion.mail import parse_date, parse_mail, to_raw_message

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "import"
# An mbox "From " separator line: "From sender Sat Mar  7 10:30:00 2026" (a time is required,
# so an unescaped "From here on..." in a body after a blank line does not split a message).
FROM_LINE = re.compile(rb"^From (\S+)\s+(.*\d{1,2}:\d{2}.*?)\s*$")
ESCAPED_FROM = re.compile(rb"^>(>*From )")

BadEntryHandler = Callable[[str, str], None]


class NotAnMbox(ValueError):
    """The file does not start with an mbox ``From`` line."""


def _log_bad(position: str, reason: str) -> None:
    log.warning("skipped %s: %s", position, reason)


def _to_raw(
    raw: bytes,
    source_name: str,
    fallback_date: datetime | None,
    metadata: dict[str, Any],
) -> RawMessage:
    """The RawMessage for one saved email; ValueError (with the reason) when it is unusable."""
    if not raw.strip():
        raise ValueError("empty message")
    parsed = parse_mail(raw)
    if not parsed.has_headers:
        raise ValueError("no email headers: not an email message")
    received_at = parsed.received or parsed.date or fallback_date
    if received_at is None:
        raise ValueError("no date: neither a Received nor a Date header can be read")
    return to_raw_message(parsed, raw, source_name, received_at, metadata)


def _mbox_entries(handle: BinaryIO, path: Path) -> Iterator[tuple[int, bytes, bytes]]:
    """(line number, From line, message bytes) for each message of an open mbox file."""
    start, separator, lines = 0, b"", []
    previous_blank = True
    for number, line in enumerate(handle, start=1):
        if previous_blank and FROM_LINE.match(line):
            if separator:
                yield start, separator, _join(lines)
            start, separator, lines = number, line, []
        elif not separator and line.strip():
            raise NotAnMbox(f"{path} is not an mbox file: it must start with a 'From ' line")
        else:
            lines.append(ESCAPED_FROM.sub(rb"\1", line))  # mboxrd: ">From " was "From "
        previous_blank = not line.strip()
    if separator:
        yield start, separator, _join(lines)


def _join(lines: list[bytes]) -> bytes:
    if lines and not lines[-1].strip():
        lines = lines[:-1]  # the blank line before the next "From " belongs to the separator
    return b"".join(lines)


def read_mbox(
    path: Path | str,
    source_name: str = DEFAULT_SOURCE,
    on_bad: BadEntryHandler = _log_bad,
) -> Iterator[RawMessage]:
    """The messages of an mbox file (mboxrd or mboxo), read as a stream.

    Bad messages are passed to ``on_bad("message N (line L)", reason)`` and skipped. Raises
    NotAnMbox when the file does not start with a ``From`` line.
    """
    path = Path(path)
    with path.open("rb") as handle:
        for index, (line, separator, raw) in enumerate(_mbox_entries(handle, path), start=1):
            position = f"message {index} (line {line})"
            match = FROM_LINE.match(separator)
            line_date = parse_date(match.group(2).decode("ascii", "replace")) if match else None
            try:
                yield _to_raw(raw, source_name, line_date, {"mbox_message": index, "line": line})
            except ValueError as exc:
                on_bad(position, str(exc))


def read_eml_folder(
    path: Path | str,
    source_name: str = DEFAULT_SOURCE,
    on_bad: BadEntryHandler = _log_bad,
) -> Iterator[RawMessage]:
    """The ``.eml`` files under ``path`` (subfolders included), in name order.

    Unreadable or bad files are passed to ``on_bad(relative path, reason)`` and skipped.
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder of .eml files")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".eml" and p.is_file())
    for file in files:
        position = str(file.relative_to(root))
        try:
            raw = file.read_bytes()
            yield _to_raw(raw, source_name, None, {"file": position})
        except (OSError, ValueError) as exc:
            on_bad(position, str(exc))
