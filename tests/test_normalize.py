"""Normalisation of raw messages: text, HTML, MIME, truncation, hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ingestion.base import RawMessage
from ingestion.normalize import author_hash, content_hash, normalize
from ingestion.text import html_to_text

KEY = b"k"
WHEN = datetime(2026, 2, 3, 7, 45, tzinfo=timezone(timedelta(hours=-5)))


def raw(body: str | bytes, **kw) -> RawMessage:
    return RawMessage(source_name="t", external_id="1", received_at=WHEN, body=body, **kw)


def test_plain_text_is_tidied_and_time_is_utc():
    out = normalize(raw("  Bus 17   late\r\n\n\n\nagain\x00 "), "sms", KEY, 1000)
    assert out.body == "Bus 17 late\n\nagain"
    assert out.received_at == WHEN and out.received_at.tzinfo == UTC
    assert out.source_kind == "sms" and not out.body_html_stripped and not out.body_truncated
    assert out.raw == "  Bus 17   late\r\n\n\n\nagain\x00 "


def test_html_is_reduced_to_visible_text_and_scripts_vanish():
    html = (
        "<html><head><style>p{color:red}</style><script>alert('x')</script></head>"
        "<body><p>Hi &amp; thanks</p><div>Route&nbsp;4 <b>late</b></div></body></html>"
    )
    out = normalize(raw(html), "email", KEY, 1000)
    assert out.body == "Hi & thanks\n\nRoute 4 late"
    assert "alert" not in out.body and "color" not in out.body
    assert out.body_html_stripped and out.raw == html


def test_text_that_mentions_a_script_tag_in_prose_is_kept_as_text():
    out = normalize(raw("I typed <script> into the portal and it broke"), "webform", KEY, 1000)
    assert "it broke" in out.body


def test_mime_with_an_unknown_charset_does_not_crash():
    mime = (
        b"Subject: =?utf-8?q?Cancelaci=C3=B3n?=\r\n"
        b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\n"
        b"Hola, el bus no lleg\xf3\r\n"
    )
    out = normalize(raw(mime), "email", KEY, 1000)
    assert out.subject == "Cancelación"
    assert out.body.startswith("Hola, el bus no lleg")


def test_html_only_mime_mail_becomes_text():
    mime = (
        b"Subject: hi\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Caf\xc3\xa9 menu <script>steal()</script>is great</p>"
    )
    out = normalize(raw(mime), "email", KEY, 1000)
    assert out.body == "Café menu is great" and out.body_html_stripped


def test_long_bodies_are_truncated_and_flagged():
    out = normalize(raw("word " * 3000), "email", KEY, 100)
    assert len(out.body) == 100 and out.body_truncated


def test_naive_times_are_refused_with_the_message_named():
    naive = RawMessage(
        source_name="t", external_id="x9", received_at=datetime(2026, 1, 1), body="b"
    )
    with pytest.raises(ValueError, match="'x9'"):
        normalize(naive, "sms", KEY, 100)


def test_content_hash_ignores_case_accents_punctuation_and_spacing():
    assert content_hash("El autobús  NO llegó!!") == content_hash("el autobus no llego")
    assert content_hash("bus late") != content_hash("bus early")


def test_author_hash_is_keyed_and_ignores_case_and_spacing():
    assert author_hash(" Mom@Example.org ", b"a") == author_hash("mom@example.org", b"a")
    assert author_hash("mom@example.org", b"a") != author_hash("mom@example.org", b"b")
    assert author_hash("", b"a") is None and author_hash(None, b"a") is None


def test_inline_only_markup_is_html_and_source_line_breaks_are_spaces():
    raw = RawMessage("feed", "1", datetime(2026, 1, 14, tzinfo=UTC),
                     "Bus <i>route 9</i> is <strong>late</strong>")  # fmt: skip
    assert normalize(raw, "social", b"k", 1000).body == "Bus route 9 is late"
    assert html_to_text("<p>the program\n   is funded</p><p>next</p>").split("\n") == [
        "", "the program is funded", "", "next", ""
    ]  # fmt: skip
