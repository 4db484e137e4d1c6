"""Reading emails: body choice, charsets, encoded subjects, reply and signature stripping, ids."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingestion.base import RawMessage
from ingestion.mail import (
    decode_bytes,
    decode_header_text,
    normalize_message_id,
    parse_mail,
    strip_quoted,
)
from ingestion.normalize import normalize

EMAILS = Path(__file__).parent / "data" / "emails"


def sample(name: str) -> bytes:
    return (EMAILS / name).read_bytes()


# --- reply and signature stripping -------------------------------------------------------------


def test_gmail_reply_keeps_only_the_new_text():
    text = (
        "Yes, my daughter will be at the meeting.\n\n"
        "On Mon, Mar 2, 2026 at 7:30 AM Principal <p@school.org> wrote:\n"
        "> Will your child attend?\n> Thanks\n"
    )
    assert strip_quoted(text) == "Yes, my daughter will be at the meeting."


def test_inline_and_bottom_posted_replies_keep_the_answers():
    text = (
        "On Mon, Mar 2, 2026 at 7:30 AM Principal <p@school.org> wrote:\n"
        "> Will your child attend?\n"
        "Yes, both of them.\n"
        "> Any allergies?\n"
        "Peanuts.\n"
    )
    assert strip_quoted(text) == "Yes, both of them.\nPeanuts."


def test_prose_that_looks_like_an_attribution_is_kept():
    text = 'On Monday my daughter wrote:\n"I am scared of the bus driver."\nPlease help.'
    assert strip_quoted(text) == text


def test_gmail_html_reply_is_cut_at_the_attribution():
    mime = (
        b"Content-Type: text/html; charset=utf-8\n\n"
        b'<div dir="ltr">Can we get a crossing guard at Elm?</div><br>'
        b'<div class="gmail_quote"><div class="gmail_attr">On Mon, Mar 2, 2026 at 7:30 AM '
        b"Office &lt;office@district.org&gt; wrote:<br></div>"
        b"<blockquote>We welcome your feedback.</blockquote></div>"
    )
    parsed = parse_mail(mime)
    assert parsed.text == "Can we get a crossing guard at Elm?" and parsed.quoted_removed


def test_outlook_original_message_and_header_blocks_are_cut():
    original = "Please fix the heating.\n\n-----Original Message-----\nFrom: Office\nHi all"
    assert strip_quoted(original) == "Please fix the heating."
    header_block = (
        "Thank you, that helps.\n\n"
        "________________________________\n"
        "From: Office <office@district.org>\n"
        "Sent: Monday, March 2, 2026 4:00 PM\n"
        "To: Parent\nSubject: Heating\n\nThe heating will be fixed."
    )
    assert strip_quoted(header_block) == "Thank you, that helps."
    bold = "Agreed.\n\n*From:* Office <o@d.org>\n*Sent:* Monday\n*To:* Parent\n\nOld text"
    assert strip_quoted(bold) == "Agreed."


def test_signatures_and_mobile_footers_are_cut():
    assert strip_quoted("Bus was late.\n\n-- \nJane Doe\nPTA treasurer") == "Bus was late."
    assert strip_quoted("Bus was late.\n--\nJane") == "Bus was late."
    assert strip_quoted("Bus was late.\n\nSent from my iPhone") == "Bus was late."
    assert strip_quoted("Bus was late.\n\nGet Outlook for Android") == "Bus was late."
    prose = "Sent from my phone because the portal is down: the bus was late."
    assert strip_quoted(prose) == prose  # a sentence, not a footer


def test_spanish_replies_and_signatures_are_cut():
    gmail = (
        "Mi hijo no tiene transporte mañana.\n\n"
        "El lun, 2 mar 2026 a las 7:30, Dirección (<dir@escuela.org>)\n"
        "escribió:\n\n"
        "> Estimadas familias...\n"
    )
    assert strip_quoted(gmail) == "Mi hijo no tiene transporte mañana."
    outlook = (
        "Gracias por avisar.\n\nEnviado desde mi Samsung Galaxy\n\n"
        "De: Escuela <e@escuela.org>\nEnviado el: lunes, 2 de marzo de 2026\n"
        "Para: Familia\nAsunto: Aviso\n\nMañana no hay clases."
    )
    assert strip_quoted(outlook) == "Gracias por avisar."
    original = "Sí, asistiremos.\n-----Mensaje original-----\nDe: Escuela\nFecha: hoy\nTexto"
    assert strip_quoted(original) == "Sí, asistiremos."
    unaccented = "Perfecto.\nEl 2 mar 2026, Escuela <e@e.org> escribio:\nTexto citado sin >"
    assert strip_quoted(unaccented) == "Perfecto."


def test_a_message_that_is_only_a_quote_is_kept_rather_than_emptied():
    only_quote = "> The bus leaves at 7.\n> Thanks"
    assert strip_quoted(only_quote) == only_quote


def test_forwarded_content_is_kept():
    forwarded = parse_mail(sample("forwarded.eml"))
    assert forwarded.text.startswith("Please read what my daughter wrote.")
    assert "yelled at the kids again" in forwarded.text
    body_forward = (
        "See below.\n\n---------- Forwarded message ---------\nFrom: A <a@b.org>\n"
        "Date: Mon\nSubject: x\n\nThe real complaint."
    )
    assert strip_quoted(body_forward).endswith("The real complaint.")


def test_sample_replies_are_stripped_and_the_original_kept_in_raw():
    english = parse_mail(sample("reply_signature_en.eml"))
    assert english.text == (
        "Thanks for the notice. Will the after-school program still run on Friday?\n"
        "My son needs care until 5."
    )
    assert english.quoted_removed
    spanish = parse_mail(sample("reply_gmail_es.eml"))
    assert spanish.text.endswith("Mi hijo estuvo tres horas.") and "Estimados" not in spanish.text
    outlook = parse_mail(sample("reply_outlook_es.eml"))
    assert outlook.text.endswith("¿Pueden revisar el horario?") and "iPhone" not in outlook.text

    raw = sample("reply_signature_en.eml")
    stored = normalize(
        RawMessage("mail", "reply-en-1@example.com", datetime(2026, 3, 9, tzinfo=UTC), raw),
        "email",
        b"key",
        10_000,
    )
    assert stored.body == english.text
    assert "Dear families" in stored.raw and "Jordan Smith" in stored.raw


# --- charsets, encoded words, HTML -------------------------------------------------------------


def test_decode_bytes_survives_unknown_and_wrong_charsets():
    assert decode_bytes("niño".encode(), "utf-8") == "niño"
    assert decode_bytes("niño".encode("latin-1"), "utf-8") == "niño"  # Latin-1 sent as UTF-8
    assert decode_bytes("niño".encode("latin-1"), "x-unknown") == "niño"
    assert decode_bytes("niño".encode(), "x-unknown") == "niño"
    assert decode_bytes(b"caf\xe9 and caf\xc3\xa9", "us-ascii") == "café and café"  # mixed
    assert decode_bytes("€5".encode("cp1252"), None) == "€5"
    assert decode_bytes(b"abc", "base64") == "abc"  # a codec that is not a text encoding
    assert decode_bytes("niño".encode("latin-1"), '"iso-8859-1"') == "niño"


def test_sample_charsets():
    unknown = parse_mail(sample("unknown_charset.eml"))
    assert "el autobús de la ruta 12 no llegó otra vez esta mañana" in unknown.text
    latin1 = parse_mail(sample("latin1_declared_utf8.eml"))
    assert "ma fille était malade après le déjeuner" in latin1.text
    assert "Café au lait" in latin1.text
    raw_headers = parse_mail(sample("raw_8bit_headers.eml"))
    assert raw_headers.subject == "Calefacción rota en el aula 4"
    assert raw_headers.text == (
        "La calefacción del aula 4 no funciona, los niños tienen frío. Por favor arréglenla."
    )
    assert raw_headers.sender == "jmartinez@example.org"


@pytest.mark.parametrize(
    ("header", "decoded"),
    [
        ("=?UTF-8?Q?Reuni=C3=B3n_de_padres?=", "Reunión de padres"),
        ("=?utf-8?b?w7Fv?= =?utf-8?b?w7Fv?=", "ñoño"),  # space between encoded words dropped
        ("=?utf-8?b?4oK=?= =?utf-8?b?rA==?= total", "€ total"),  # a character split in two
        ("Re: =?iso-8859-1?q?Calificaci=F3n?= final", "Re: Calificación final"),
        ("=?x-unknown?q?Cancelaci=F3n?=", "Cancelación"),
        ("=?ISO-8859-1*es?Q?A=F1o?=", "Año"),  # RFC 2231 language tag
        ("=?utf-8?B?not-valid-base64!!?=", "=?utf-8?B?not-valid-base64!!?="),
        ("Plain\r\n folded subject", "Plain folded subject"),
    ],
)
def test_encoded_words_are_decoded(header, decoded):
    assert decode_header_text(header) == decoded


def test_sample_spanish_subject_spanning_folded_encoded_words():
    parsed = parse_mail(sample("spanish_encoded_subject.eml"))
    assert parsed.subject == "Reunión de padres y cancelación del año"
    assert parsed.text.startswith("¿Por qué se canceló la reunión de padres?")


def test_html_only_mail_is_text_without_scripts_or_styles():
    parsed = parse_mail(sample("html_only_script.eml"))
    assert parsed.html_stripped
    assert 'The lunch menu says "chicken" but they served fish & chips.' in parsed.text
    for hidden in ("document.cookie", "alert", "font-family", "<p>"):
        assert hidden not in parsed.text


def test_plain_text_is_preferred_but_an_empty_plain_part_falls_back_to_html():
    mime = (
        b"Content-Type: multipart/alternative; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\n \n"
        b"--b\nContent-Type: text/html\n\n<p>Only the <b>HTML</b> says it</p>\n--b--\n"
    )
    parsed = parse_mail(mime)
    assert parsed.text.strip() == "Only the HTML says it" and parsed.html_stripped
    assert not parse_mail(sample("multipart_attachments.eml")).html_stripped


def test_broken_mail_never_raises():
    assert "forgot the boundary" in parse_mail(sample("broken_multipart.eml")).text
    bad = parse_mail(sample("bad_base64.eml"))
    assert bad.text.startswith("The wifi in the library is down.")
    assert bad.date is None  # "not a date at all"
    rng = random.Random(7)
    for path in sorted(EMAILS.glob("*.eml")):
        data = path.read_bytes()
        for cut in range(0, len(data), max(1, len(data) // 15)):
            parse_mail(data[:cut])  # every truncation
        for _ in range(20):
            mutated = bytearray(data)
            for _ in range(5):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            parsed = parse_mail(bytes(mutated))  # random byte damage
            assert isinstance(parsed.text, str) and parsed.key
    assert parse_mail(b"").key.startswith("sha256:")


def test_nul_bytes_are_dropped():
    parsed = parse_mail(sample("nul_bytes.eml"))
    assert parsed.text.startswith("The web form sent this with a NUL byte and a bell")
    assert parsed.subject == "Broken form \x07submission"  # normalize() drops the bell


# --- attachments, ids, sender, dates -----------------------------------------------------------


def test_attachments_are_counted_not_read():
    parsed = parse_mail(sample("multipart_attachments.eml"))
    assert parsed.attachments == 4  # pdf, inline png, attached .txt, attached email
    assert (
        parsed.text == "Attached is the signed permission slip for the field trip, plus two photos."
    )
    assert "notes are an attachment" not in parsed.text and "Inner forwarded" not in parsed.text
    assert parse_mail(sample("reply_signature_en.eml")).attachments == 0
    only_pdf = b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n"
    parsed = parse_mail(only_pdf)
    assert parsed.attachments == 1 and parsed.text == ""


@pytest.mark.parametrize(
    ("header", "normalised"),
    [
        ("<AbC.123@Mail.Example.ORG>", "AbC.123@mail.example.org"),
        ("  <abc@EXAMPLE.org>  ", "abc@example.org"),
        ("<abc@\r\n EXAMPLE.org>", "abc@example.org"),
        ("abc@Example.Org", "abc@example.org"),
        ("<first@a.org> <second@b.org>", "first@a.org"),
        ("<no-at-sign>", "no-at-sign"),
        ("<>", None),
        ("", None),
        (None, None),
    ],
)
def test_message_ids_are_normalised(header, normalised):
    assert normalize_message_id(header) == normalised


def test_key_is_the_message_id_or_a_stable_hash():
    assert parse_mail(sample("unknown_charset.eml")).key == "unknown-charset.1@mail.example.org"
    no_id = sample("no_message_id.eml")
    parsed = parse_mail(no_id)
    assert parsed.message_id is None and parsed.key.startswith("sha256:")
    assert parse_mail(no_id.replace(b"\n", b"\r\n")).key == parsed.key  # same over IMAP (CRLF)
    other_body = no_id.replace(b"Kids were crossing alone.", b"Kids waited inside.")
    assert parse_mail(other_body).key != parsed.key
    long_id = b"Message-ID: <" + b"x" * 300 + b"@example.org>\n\nbody"
    key = parse_mail(long_id).key
    assert key.startswith("sha256:") and len(key) <= 255  # fits the external_id column


def test_sender_and_dates():
    parsed = parse_mail(sample("spanish_encoded_subject.eml"))
    assert parsed.sender == "maria.garcia@example.com"
    assert parsed.date == datetime(2026, 3, 5, 0, 20, tzinfo=UTC)
    received = parse_mail(
        b"Received: from mx.example.org by mail.district.org; Tue, 3 Mar 2026 08:00:05 -0500\n"
        b"Received: from laptop by mx.example.org; Tue, 3 Mar 2026 07:59:00 -0500\n"
        b"Date: Tue, 3 Mar 2026 07:58:00 -0500\nFrom: <>\n\nx"
    )
    assert received.received == datetime(2026, 3, 3, 13, 0, 5, tzinfo=UTC)  # top-most hop
    assert received.sender is None
    assert parse_mail(b"Date: Mon, 16 Mar 2026 07:00:00 -0000\n\nx").date.tzinfo == UTC
