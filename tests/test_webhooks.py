"""Webhooks on the real dashboard app: Twilio's signed form posts and signed JSON posts."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from core.db import read_session
from core.models import Message, SourceState
from dashboard.app import create_app

TOKEN = "twilio-auth-token"
SECRET = "form-signing-secret"
PUBLIC_URL = "https://pulse.example.org/webhooks/sms-reply"
SOURCES = f"""
[[webhook]]
name = "sms"
type = "twilio"
auth_token_env = "PULSE_TEST_TWILIO_TOKEN"

[[webhook]]
name = "sms-reply"
type = "twilio"
auth_token_env = "PULSE_TEST_TWILIO_TOKEN"
public_url = "{PUBLIC_URL}"
auto_reply = "Thanks, Maple Valley got your message & will reply <soon>."

[[webhook]]
name = "forms"
type = "signed_json"
secret_env = "PULSE_TEST_FORM_SECRET"
max_bytes = 2000
"""


@pytest.fixture
def client(db_engine, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("PULSE_TEST_TWILIO_TOKEN", TOKEN)
    monkeypatch.setenv("PULSE_TEST_FORM_SECRET", SECRET)
    settings.sources_file = tmp_path / "sources.toml"
    settings.sources_file.write_text(SOURCES, encoding="utf-8")
    return create_app(settings, db_engine).server.test_client()


def messages(engine) -> list[Message]:
    with read_session(engine) as session:
        return list(session.scalars(select(Message).order_by(Message.external_id)))


def twilio_form(sid: str = "SM" + "a" * 32, body: str = "Is school open tomorrow?") -> dict:
    """The fields Twilio posts for an incoming SMS."""
    return {
        "ToCountry": "US", "ToState": "OR", "SmsMessageSid": sid, "NumMedia": "0",
        "ToCity": "MAPLE VALLEY", "FromZip": "97201", "SmsSid": sid, "FromState": "OR",
        "SmsStatus": "received", "FromCity": "PORTLAND", "Body": body, "FromCountry": "US",
        "To": "+15550100", "ToZip": "97202", "NumSegments": "1", "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32, "From": "+15550123", "ApiVersion": "2010-04-01",
    }  # fmt: skip


def post_twilio(client, name: str, form: dict, url: str | None = None, token: str = TOKEN):
    url = url or f"http://localhost/webhooks/{name}"  # what the test client's request.url is
    signature = RequestValidator(token).compute_signature(url, form)
    return client.post(f"/webhooks/{name}", data=form, headers={"X-Twilio-Signature": signature})


def post_json(client, payload, secret: str = SECRET, name: str = "forms", raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Pulse-Signature": f"sha256={digest}", "Content-Type": "application/json"}
    return client.post(f"/webhooks/{name}", data=body, headers=headers)


def test_a_signed_twilio_text_is_stored_once(client, db_engine):
    form = twilio_form()
    response = post_twilio(client, "sms", form)
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    assert post_twilio(client, "sms", form).status_code == 200  # Twilio retries
    [text] = messages(db_engine)
    assert (text.source_name, text.source_kind, text.external_id) == ("sms", "sms", "SM" + "a" * 32)
    assert (text.body, text.author) == ("Is school open tomorrow?", "+15550123")
    assert text.meta == {"to": "+15550100", "num_media": 0, "from_city": "PORTLAND",
                         "from_state": "OR"}  # fmt: skip
    with read_session(db_engine) as session:
        state = session.get_one(SourceState, "sms")
    assert state.last_success_at is not None and state.messages_total == 1


@pytest.mark.parametrize(
    "tamper",
    ["other token", "changed body", "no signature", "garbage signature"],
)
def test_a_forged_or_unsigned_twilio_request_is_refused(client, db_engine, tamper):
    form = twilio_form()
    if tamper == "other token":
        response = post_twilio(client, "sms", form, token="not-the-token")
    elif tamper == "changed body":
        signature = RequestValidator(TOKEN).compute_signature("http://localhost/webhooks/sms", form)
        form["Body"] = "Gotcha"
        response = client.post(
            "/webhooks/sms", data=form, headers={"X-Twilio-Signature": signature}
        )
    else:
        headers = {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"} if "garbage" in tamper else {}
        response = client.post("/webhooks/sms", data=form, headers=headers)
    assert response.status_code == 403
    assert messages(db_engine) == []


def test_auto_reply_twiml_and_the_public_url_behind_a_proxy(client, db_engine):
    local = post_twilio(
        client, "sms-reply", twilio_form(), url="http://localhost/webhooks/sms-reply"
    )
    assert local.status_code == 403  # signed for the internal URL, not the one Twilio calls
    response = post_twilio(client, "sms-reply", twilio_form(), url=PUBLIC_URL)
    assert response.status_code == 200
    assert response.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
        "Thanks, Maple Valley got your message &amp; will reply &lt;soon&gt;.</Message></Response>"
    )
    assert len(messages(db_engine)) == 1


def test_an_unknown_webhook_is_404(client):
    response = client.post("/webhooks/nope", data={})
    assert response.status_code == 404 and response.get_json()["error"] == "no webhook named 'nope'"


def test_signed_json_single_and_list(client, db_engine):
    one = {"id": "f-1", "received_at": "2026-01-15T07:30:00", "body": "The bus was late",
           "subject": "Route 17", "author": "parent@example.org", "school": "Lincoln",
           "source": "ignored"}  # fmt: skip
    response = post_json(client, one)
    assert (response.status_code, response.get_json()) == (200, {"received": 1, "new": 1})
    two = {"id": "f-2", "received_at": "2026-01-15T13:00:00Z", "body": "Lunch was cold"}
    response = post_json(client, [one, two])
    assert response.get_json() == {"received": 2, "new": 1}
    first, second = messages(db_engine)
    assert (first.source_name, first.source_kind, first.subject) == ("forms", "webform", "Route 17")
    assert first.received_at.isoformat() == "2026-01-15T12:30:00+00:00"  # 07:30 in New York
    assert (first.author, first.school, second.body) == (
        "parent@example.org",
        "Lincoln",
        "Lunch was cold",
    )


def test_signed_json_refuses_forged_or_unsigned_requests(client, db_engine):
    payload = {"id": "x", "received_at": "2026-01-15T07:30:00Z", "body": "hello"}
    assert post_json(client, payload, secret="wrong").status_code == 403
    unsigned = client.post("/webhooks/forms", json=payload)
    assert unsigned.status_code == 403 and "X-Pulse-Signature" in unsigned.get_json()["error"]
    assert messages(db_engine) == []


@pytest.mark.parametrize(
    ("raw", "error", "index"),
    [
        (b"{not json", "the body is not valid JSON: Expecting property name", None),
        (b"\xff\xfe\xfa", "the body is not UTF-8 text", None),
        (json.dumps([{"id": "a", "received_at": "2026-01-15T07:30:00Z", "body": "fine"},
                     {"id": "b", "received_at": "2026-01-15T07:31:00Z"}]).encode(),
         "item 1: missing required field 'body'", 1),
        (json.dumps([{"id": "a", "received_at": "yesterday", "body": "x"}]).encode(),
         "item 0: received_at 'yesterday' is not an ISO 8601 time", 0),
        (json.dumps([{"id": "a", "received_at": "2026-01-15T07:30:00Z", "body": "x"}, "text"]
                    ).encode(), "item 1: expected a JSON object", 1),
        (json.dumps({"id": "a" * 256, "received_at": "2026-01-15", "body": "x"}).encode(),
         "item 0: field 'id' is longer than 255 characters", 0),
    ],
)  # fmt: skip
def test_signed_json_bad_bodies_get_400_and_store_nothing(client, db_engine, raw, error, index):
    response = post_json(client, None, raw=raw)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(error)
    assert response.get_json().get("index") == index
    assert messages(db_engine) == []


def test_html_is_stored_as_text_without_scripts(client, db_engine):
    body = "<p>Bus <b>17</b> was late</p><script>document.location='https://evil'</script>"
    response = post_json(client, {"id": "h", "received_at": "2026-01-15T07:30:00Z", "body": body})
    assert response.status_code == 200
    [stored] = messages(db_engine)
    assert stored.body == "Bus 17 was late" and stored.body_html_stripped
    assert "evil" not in stored.body and "script" not in stored.body


def test_an_oversized_body_gets_413_and_stores_nothing(client, db_engine):
    payload = {"id": "big", "received_at": "2026-01-15T07:30:00Z", "body": "x" * 2500}
    response = post_json(client, payload)
    assert response.status_code == 413 and "2000 bytes" in response.get_json()["error"]
    assert messages(db_engine) == []


def test_a_webhook_whose_secret_is_not_set_fails_closed(client, db_engine, monkeypatch, caplog):
    monkeypatch.delenv("PULSE_TEST_FORM_SECRET")
    response = post_json(client, {"id": "x", "received_at": "2026-01-15T07:30:00Z", "body": "x"})
    assert response.status_code == 500 and "misconfigured" in response.get_json()["error"]
    assert "PULSE_TEST_FORM_SECRET" in caplog.text  # the log says which variable to set
    assert messages(db_engine) == []
