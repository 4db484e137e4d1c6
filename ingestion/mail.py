"""Reading an email: the text worth analysing, the subject, the sender, a stable id.

Every email source (IMAP, mbox and .eml imports) goes through ``parse_mail``. It never raises on
a malformed message: unknown or wrong charsets fall back to UTF-8 and then Windows-1252 (what a
mislabelled body almost always is), broken headers fall back to their raw text. The analysed text
has quoted replies and signatures removed; the original bytes stay in ``RawMessage.body``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import email.quoprimime
import email.utils
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any

from ingestion.base import RawMessage
from ingestion.text import html_to_text

MAX_ID_CHARS = 200  # longer Message-IDs are hashed to fit the external_id column
# NUL is not allowed in mail (RFC 5322) nor in PostgreSQL text: such bytes are dropped.
NUL = b"\x00"

ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?\s]*)\?=")
FOLD = re.compile(r"\r?\n(?=[ \t])")
FORWARDED_SUBJECT = re.compile(r"^\s*(fwd?|fw|rv|reenv(iado)?)\s*:", re.IGNORECASE)
FORWARD_MARKER = re.compile(
    r"^\s*(-{3,}\s*(forwarded message|mensaje reenviado)\s*-{3,}"
    r"|begin forwarded message:|inicio del mensaje reenviado:)\s*$",
    re.IGNORECASE,
)
# "On Mon, 2 Mar 2026 at 07:30, Ana <ana@example.org> wrote:" and its Spanish form. A date
# (a digit) is required, so prose such as "On Monday my daughter wrote:" is not a quote.
ATTRIBUTION = re.compile(
    r"^\s*(?=.*\d)(on\s.{0,300}\swrote|el\s.{0,300}\sescribi[óo])\s*:\s*$", re.IGNORECASE
)
ATTRIBUTION_START = re.compile(r"^\s*(on|el)\s", re.IGNORECASE)
ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(original message|mensaje original)\s*-{2,}\s*$", re.IGNORECASE
)
# Outlook's quoted header block: "From: ..." then "Sent: ..." (Spanish "De:" / "Enviado:").
HEADER_FROM = re.compile(r"^\s*\*?(from|de)\s*:\*?\s+\S", re.IGNORECASE)
HEADER_SENT = re.compile(r"^\s*\*?(sent|date|enviado(\s+el)?|fecha)\s*:\*?\s+\S", re.IGNORECASE)
UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
SIGNATURE_DELIMITER = re.compile(r"^--\s*$")
DEVICE = r"[\w.-]+( [\w.-]+){0,3}"  # "iPhone", "Samsung Galaxy smartphone": a few words
MOBILE_FOOTER = re.compile(
    rf"^\s*(sent from my {DEVICE}|sent from (yahoo mail|mail for windows|outlook)( for \w+)?"
    rf"|get outlook for \w+|enviado desde mi {DEVICE}"
    r"|enviado desde (yahoo mail|correo para windows|outlook)( para \w+)?|obtener outlook para \w+)"
    r"\s*$",
    re.IGNORECASE,
)


class _ReusingPolicy(email.policy.EmailPolicy):
    """``email.policy.default`` (same settings) that reuses parsed headers.

    The default policy parses a header again on every access (``get_content_type()`` alone
    parses Content-Type several times per part): that was most of the time spent reading a
    mailbox. Parsed headers are never changed, so equal (name, value) pairs can share one.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        """The parsed header for a raw (name, value), from a cache of recent ones."""
        if hasattr(value, "name"):  # already parsed
            return value
        return _parse_header(self, name, value)


@functools.lru_cache(maxsize=1024)
def _parse_header(policy: email.policy.EmailPolicy, name: str, value: str) -> Any:
    return email.policy.EmailPolicy.header_fetch_parse(policy, name, value)


POLICY = _ReusingPolicy()


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not UTF-8 are read as Windows-1252."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return bad.decode("cp1252", errors="replace"), exc.end


codecs.register_error("pulse-cp1252", _cp1252_fallback)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Text from ``data`` in its declared charset; unknown or wrong charsets never raise.

    When the declared charset is unknown (``x-unknown``) or does not fit the bytes (Latin-1 sent
    as UTF-8), the bytes are read as UTF-8 with each invalid byte read as Windows-1252.
    """
    if charset:
        try:
            return data.decode(charset.strip().strip("\"'"))
        except (LookupError, UnicodeDecodeError, ValueError):
            pass
    return data.decode("utf-8", errors="pulse-cp1252")


def _repair(text: str) -> str:
    """Undo the parser's surrogate escapes (raw 8-bit bytes in headers) as real characters."""
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    try:
        return decode_bytes(text.encode("utf-8", errors="surrogateescape"), None)
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


def _encoded_word_bytes(encoding: str, data: str) -> bytes:
    if encoding.lower() == "b":
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    return email.quoprimime.header_decode(data).encode("latin-1")


def decode_header_text(value: str) -> str:
    """A header's text with RFC 2047 encoded words decoded; bad charsets and 8-bit bytes survive.

    Adjacent encoded words in one charset are joined before decoding, so a character split
    across two words (as some mailers do) comes out whole.
    """
    value = FOLD.sub("", value)
    parts: list[str] = []
    run: list[bytes] = []
    run_charset: str | None = None
    position = 0

    def flush() -> None:
        if run:
            parts.append(decode_bytes(b"".join(run), run_charset))
            run.clear()

    for match in ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        position = match.end()
        charset = match.group(1).split("*")[0].lower()  # RFC 2231 language suffix: utf-8*es
        try:
            data = _encoded_word_bytes(match.group(2), match.group(3))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            flush()
            parts.append(_repair(between) + match.group(0))
            continue
        if run and not between.strip():  # space between encoded words is not text
            if charset != run_charset:
                flush()
        else:
            flush()
            parts.append(_repair(between))
        run.append(data)
        run_charset = charset
    flush()
    parts.append(_repair(value[position:]))
    return "".join(parts)


def normalize_message_id(value: str | None) -> str | None:
    """``<AbC@Mail.Example.ORG>`` -> ``AbC@mail.example.org``: brackets and spaces gone, the
    domain lowercased (the local part is case-sensitive). None when there is no id."""
    if not value:
        return None
    value = "".join(_repair(value).split())
    bracketed = re.search(r"<([^<>]+)>", value)
    value = (bracketed.group(1) if bracketed else value).strip("<>")
    if not value:
        return None
    local, at, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}" if at and local else value


def parse_date(value: str | None) -> datetime | None:
    """An RFC 5322 (or asctime) date as an aware UTC datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": the sender did not say; read as UTC
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def strip_quoted(text: str) -> str:
    """The author's own words: quoted replies and signatures removed (English and Spanish).

    Removes lines starting with ``>``; cuts at an Outlook "-----Original Message-----" or
    "From:/Sent:" block, at "On ... wrote:" / "El ... escribió:" when the quote after it is not
    ``>``-prefixed (when it is, only that line goes, so bottom-posted replies survive), at a
    ``-- `` signature and at a "Sent from my iPhone" / "Enviado desde mi ..." footer. A forwarded
    message is left alone from its "Forwarded message" line on. Text that would be left empty
    is returned unchanged.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if FORWARD_MARKER.match(line):
            kept.extend(lines[index:])
            break
        attribution = _attribution_length(lines, index)
        if attribution:
            following = next((s for s in lines[index + attribution :] if s.strip()), "")
            if not following.lstrip().startswith(">"):
                break
            index += attribution
            continue
        if _starts_quoted_block(lines, index) or SIGNATURE_DELIMITER.match(line):
            break
        if MOBILE_FOOTER.match(line):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
        index += 1
    result = "\n".join(kept).strip()
    return result if result else text


def _attribution_length(lines: list[str], index: int) -> int:
    """1 or 2 when an "On ... wrote:" line (maybe wrapped onto a second line) starts here."""
    line = lines[index]
    if ATTRIBUTION.match(line):
        return 1
    wrapped = index + 1 < len(lines) and ATTRIBUTION_START.match(line)
    if wrapped and ATTRIBUTION.match(f"{line.rstrip()} {lines[index + 1].strip()}"):
        return 2
    return 0


def _starts_quoted_block(lines: list[str], index: int) -> bool:
    line = lines[index]
    if ORIGINAL_MESSAGE.match(line):
        return True
    if UNDERSCORES.match(line):
        return any(HEADER_FROM.match(s) for s in lines[index + 1 : index + 3])
    if HEADER_FROM.match(line):
        return any(HEADER_SENT.match(s) for s in lines[index + 1 : index + 4])
    return False


@dataclass(frozen=True)
class ParsedMail:
    """What Pulse reads from one email.

    ``text`` is the analysed body (HTML reduced to text, quoted replies and signatures removed);
    ``message_id`` is the normalised Message-ID or None; ``key`` is the stable id to store it by.
    """

    text: str
    subject: str | None
    html_stripped: bool
    attachments: int
    message_id: str | None
    key: str
    sender: str | None
    date: datetime | None
    received: datetime | None
    quoted_removed: bool
    has_headers: bool


def _raw_header(msg: Message, name: str) -> str | None:
    """The first ``name`` header's raw value, without the parser's interpretation."""
    name = name.lower()
    return next((v for k, v in msg.raw_items() if k.lower() == name), None)


def _sender(msg: Message) -> str | None:
    try:
        addresses = msg["from"].addresses if msg["from"] is not None else ()
        address = addresses[0].addr_spec if addresses else ""
    except (AttributeError, IndexError, TypeError, ValueError, LookupError):
        address = ""
    if not address or address == "<>":
        address = email.utils.parseaddr(FOLD.sub("", _raw_header(msg, "from") or ""))[1]
    address = _repair(address).strip()
    return address or None


def _received(msg: Message) -> datetime | None:
    """When the last server got the message: the date in the top-most Received header."""
    value = _raw_header(msg, "received")
    return parse_date(value.rpartition(";")[2]) if value and ";" in value else None


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except (LookupError, ValueError):
        charset = None
    return decode_bytes(data, charset)


def _scan_parts(msg: Message) -> tuple[Message | None, Message | None, int]:
    """The text/plain and text/html parts that carry the body, and how many attachments.

    As ``EmailMessage.get_body`` chooses: the first plain and the first HTML part not marked as
    attachments, outside attached emails. Every other part counts as an attachment, except
    further inline text. Each part's headers are read once: policy.default parses a header
    again on every access, which made this the slowest step of reading a mailbox.
    """
    plain = html = None
    attachments = 0
    stack = [msg]
    while stack:
        part = stack.pop()
        ctype = part.get_content_type()
        if ctype.startswith("multipart/"):
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed(payload))
                continue
            ctype = "text/plain"  # a multipart without a boundary parses as one text payload
        if part.get_content_disposition() != "attachment":
            if ctype == "text/plain" and plain is None:
                plain = part
                continue
            if ctype == "text/html" and html is None:
                html = part
                continue
            if ctype.startswith("text/") and not _has_filename(part):
                continue  # another inline text part, e.g. a second alternative
        attachments += 1
    return plain, html, attachments


def _has_filename(part: Message) -> bool:
    try:
        return bool(part.get_filename())
    except (LookupError, ValueError, TypeError):
        return True


def _fallback_key(msg: Message, raw: bytes) -> str:
    """sha256 of From, Date, Subject and the body, for a message without a Message-ID."""
    _, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    digest = hashlib.sha256()
    for name in ("from", "date", "subject"):
        digest.update(FOLD.sub("", _raw_header(msg, name) or "").strip().encode("utf-8", "replace"))
        digest.update(b"\0")
    digest.update(body)
    return f"sha256:{digest.hexdigest()}"


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse MIME bytes into what Pulse analyses; never raises on malformed mail."""
    raw = raw.replace(NUL, b"")
    msg = email.message_from_bytes(raw, policy=POLICY)
    plain, html, attachments = _scan_parts(msg)
    text, html_stripped = (_part_text(plain), False) if plain is not None else ("", False)
    if not text.strip() and html is not None:
        text, html_stripped = html_to_text(_part_text(html)), True
    forwarded = False
    subject_raw = _raw_header(msg, "subject")
    subject = " ".join(decode_header_text(subject_raw).split()) if subject_raw else None
    if subject and FORWARDED_SUBJECT.match(subject):
        forwarded = True
    analysed = text if forwarded else strip_quoted(text)
    message_id = normalize_message_id(_raw_header(msg, "message-id"))
    if message_id and len(message_id) <= MAX_ID_CHARS:
        key = message_id
    elif message_id:
        key = f"sha256:{hashlib.sha256(message_id.encode('utf-8', 'replace')).hexdigest()}"
    else:
        key = _fallback_key(msg, raw)
    return ParsedMail(
        text=analysed,
        subject=subject or None,
        html_stripped=html_stripped,
        attachments=attachments,
        message_id=message_id,
        key=key,
        sender=_sender(msg),
        date=parse_date(_raw_header(msg, "date")),
        received=_received(msg),
        quoted_removed=analysed != text.strip(),
        has_headers=bool(msg.keys()),
    )


def to_raw_message(
    parsed: ParsedMail,
    raw: bytes,
    source_name: str,
    received_at: datetime,
    metadata: dict[str, Any] | None = None,
) -> RawMessage:
    """The RawMessage for a parsed email: the original bytes (without NULs) as body, keyed by
    Message-ID."""
    return RawMessage(
        source_name=source_name,
        external_id=parsed.key,
        received_at=received_at.astimezone(UTC),
        body=raw.replace(NUL, b""),
        author=parsed.sender,
        subject=parsed.subject,
        source_kind="email",
        metadata={
            "message_id": parsed.message_id,
            "attachments": parsed.attachments,
            "quoted_removed": parsed.quoted_removed,
            **(metadata or {}),
        },
    )
