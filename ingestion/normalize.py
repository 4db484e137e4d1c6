"""Turn a source's RawMessage into the NewMessage Pulse stores: text, hashes, flags."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from datetime import UTC
from functools import lru_cache

import numpy as np

from core.messages import NewMessage
from ingestion.base import RawMessage
from ingestion.mail import parse_mail
from ingestion.text import html_to_text, looks_like_html, tidy_whitespace

RAW_KEEP_CHARS = 1_000_000  # the original as received is kept up to this size
NOT_WORD = re.compile(r"[^\w\s]|_")  # after NFKD this also drops accents
TIDY_MARGIN = 4  # text beyond this many times the body limit is cut before tidying


def folded_words(text: str) -> list[str]:
    """The words of ``text`` with case, accents and punctuation ignored."""
    return NOT_WORD.sub("", unicodedata.normalize("NFKD", text.casefold())).split()


def content_hash(text: str) -> str:
    """A hash equal for texts that differ only in case, accents, punctuation and spacing."""
    return _content_hash(folded_words(text))


def _content_hash(words: list[str]) -> str:
    return hashlib.sha256(" ".join(words).encode()).hexdigest()


@lru_cache(maxsize=200_000)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")


def near_hash(text: str) -> int:
    """A 64-bit SimHash of the text's words (signed, to fit a BIGINT column).

    Near-identical texts (a campaign letter with another signature, a forwarded SMS with a
    word changed) have hashes a few bits apart; see ``core.campaigns``.
    """
    return _near_hash(folded_words(text))


def _near_hash(words: list[str]) -> int:
    if not words:
        return 0
    hashes = np.array([_word_hash(w) for w in words], dtype="<u8")
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    majority = bits.sum(axis=0) * 2 > len(words)
    return int(np.packbits(majority, bitorder="little").view("<i8")[0])


def author_hash(author: str | None, key: bytes) -> str | None:
    """A keyed hash of the author's address, so counts per author never need the address."""
    if not author or not author.strip():
        return None
    return hmac.new(key, author.strip().casefold().encode(), hashlib.sha256).hexdigest()


def normalize(raw: RawMessage, kind: str, author_key: bytes, max_body_chars: int) -> NewMessage:
    """The stored form of ``raw``: plain text body (HTML stripped, truncated), UTC time, hashes."""
    if raw.received_at.tzinfo is None:
        raise ValueError(
            f"message {raw.external_id!r} from {raw.source_name!r} has a naive received_at"
        )
    subject = raw.subject
    if isinstance(raw.body, bytes):  # email: quoted replies and signatures removed, see mail.py
        parsed = parse_mail(raw.body)
        text, stripped = parsed.text, parsed.html_stripped
        subject = subject or parsed.subject
        original = raw.body.decode("utf-8", errors="replace")
    else:
        original = raw.body
        stripped = looks_like_html(raw.body)
        text = html_to_text(raw.body) if stripped else raw.body
    # tidying only shortens, so a text far over the limit is cut first (a 5 MB body stays fast)
    truncated = len(text) > TIDY_MARGIN * max_body_chars
    text = tidy_whitespace(text[: TIDY_MARGIN * max_body_chars])
    if len(text) > max_body_chars:
        truncated, text = True, text[:max_body_chars]
    words = folded_words(text)
    return NewMessage(
        source_kind=raw.source_kind or kind,
        source_name=raw.source_name,
        external_id=raw.external_id,
        received_at=raw.received_at.astimezone(UTC),
        body=text,
        content_hash=_content_hash(words),
        near_hash=_near_hash(words),
        author=raw.author,
        author_hash=author_hash(raw.author, author_key),
        subject=tidy_whitespace(subject) if subject else None,
        raw=None if original == text else original[:RAW_KEEP_CHARS],
        body_html_stripped=stripped,
        body_truncated=truncated,
        school=raw.school,
        meta=raw.metadata or None,
    )
