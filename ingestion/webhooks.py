"""Webhooks: sources that push to Pulse at ``POST /webhooks/<name>`` on the dashboard's server.

Each ``[[webhook]]`` table of ``sources.toml`` opens one URL,
``https://<pulse host>/webhooks/<name>``; an unknown name gets 404. The routes live in their own
blueprint (``webhooks``), so a login guard on the dashboard must skip
``request.blueprint == "webhooks"``: there the signature is the credential.

**Twilio** (``type = "twilio"``): set the phone number's "A message comes in" webhook to that URL
(HTTP POST)::

    [[webhook]]
    name = "sms"
    type = "twilio"
    auth_token_env = "PULSE_TWILIO_AUTH_TOKEN"   # the account's Auth Token: Twilio signs with it
    public_url = "https://pulse.example.org/webhooks/sms"   # optional, see below
    auto_reply = "Thanks, we got your message."               # optional

The ``X-Twilio-Signature`` header is checked with Twilio's ``RequestValidator``; a missing or
wrong signature gets 403 and nothing is stored. The signature covers the URL Twilio called, so
behind a proxy or TLS terminator set ``public_url`` to exactly the URL configured in Twilio.
The text is stored as an ``sms`` message whose id is the ``MessageSid``: Twilio retries failed
webhooks, and a retry stores nothing new. The answer is TwiML: an empty ``<Response/>``, or a
``<Message>`` with ``auto_reply``.

**Signed JSON** (``type = "signed_json"``): for web forms, voicemail transcription and scripts::

    [[webhook]]
    name = "contact-form"
    type = "signed_json"
    secret_env = "PULSE_FORM_SECRET"
    kind = "webform"        # webform (default), voicemail, social, sms or email
    max_bytes = 1000000     # larger bodies get 413

POST one JSON object, or a list of them, in the JSONL message format: ``id``, ``received_at``
(ISO 8601; without a zone it is read in the district's zone) and ``body`` required; ``subject``,
``author``, ``school`` optional (a ``source`` field is ignored: the webhook's name is the
source). Sign the raw body with HMAC-SHA256 and send
``X-Pulse-Signature: sha256=<hex digest>`` (GitHub's scheme), e.g.::

    sig=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
    curl -H "Content-Type: application/json" -H "X-Pulse-Signature: sha256=$sig" \\
         --data "$BODY" https://pulse.example.org/webhooks/contact-form

Answers: 200 ``{"received": n, "new": m}``; 400 ``{"error": ..., "index": i}`` for a body that
is not JSON or an item that is not a valid message (the error names the field, ``index`` is the
item's 0-based position; nothing from that request is stored); 403 for a missing or wrong
signature; 413 for a body over ``max_bytes``. No timestamp is signed: a replayed request can only
repeat message ids already stored, which the (source, id) key ignores, so replay protection
would add a clock dependency to every sender and protect nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.exceptions import RequestEntityTooLarge

from core.db import write_session
from dashboard.context import pulse
from ingestion.base import RawMessage
from ingestion.errors import SourceConfigError
from ingestion.files import BadRow, record_to_raw
from ingestion.runner import store_messages
from ingestion.sources import WebhookConfig, load_sources

log = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__, url_prefix="/webhooks")

CONFIG_KEY = "pulse_webhooks"  # the webhooks of sources.toml, read on the first webhook request
SIGNATURE_HEADER = "X-Pulse-Signature"
SIGNED_JSON_KINDS = ("webform", "voicemail", "social", "sms", "email")
DEFAULT_MAX_BYTES = 1_000_000
TWILIO_MAX_BYTES = 64 * 1024  # a 1,600-character text, form-encoded, with Twilio's other fields
TWILIO_METADATA = {
    "To": "to",
    "NumMedia": "num_media",
    "FromCity": "from_city",
    "FromState": "from_state",
}


@dataclass(frozen=True)
class TwilioHook:
    """Options of a ``twilio`` webhook."""

    auth_token: str
    public_url: str | None = None
    auto_reply: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.auth_token, str) or not self.auth_token:
            raise ValueError("auth_token_env must name a variable holding the Auth Token")
        if self.public_url is not None and not str(self.public_url).startswith(
            ("https://", "http://")
        ):
            raise ValueError(f"public_url = {self.public_url!r}: give the full https:// URL")
        if self.auto_reply is not None and not isinstance(self.auto_reply, str):
            raise ValueError("auto_reply must be text")


@dataclass(frozen=True)
class SignedJsonHook:
    """Options of a ``signed_json`` webhook."""

    secret: str
    kind: str = "webform"
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.secret, str) or not self.secret:
            raise ValueError("secret_env must name a variable holding the signing secret")
        if self.kind not in SIGNED_JSON_KINDS:
            raise ValueError(f"kind = {self.kind!r}: use one of {', '.join(SIGNED_JSON_KINDS)}")
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int):
            raise ValueError(f"max_bytes = {self.max_bytes!r}: give a number of bytes")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes = {self.max_bytes}: must be positive")


HOOK_TYPES: dict[str, type[TwilioHook] | type[SignedJsonHook]] = {
    "twilio": TwilioHook,
    "signed_json": SignedJsonHook,
}


def build_hook(config: WebhookConfig) -> TwilioHook | SignedJsonHook:
    """The checked options of ``config``; ValueError names the webhook and the bad option."""
    try:
        return HOOK_TYPES[config.type](**config.options)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"webhook {config.name!r} ({config.type}): {exc}") from exc


def pulse_signature(secret: str, body: bytes) -> str:
    """The ``X-Pulse-Signature`` value a sender puts on ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _configs() -> dict[str, WebhookConfig]:
    configs = current_app.extensions.get(CONFIG_KEY)
    if configs is None:
        configs = {hook.name: hook for hook in load_sources(pulse().settings).webhooks}
        current_app.extensions[CONFIG_KEY] = configs
    return configs


@blueprint.post("/<name>")
def receive(name: str) -> ResponseReturnValue:
    """Check and store what the webhook ``name`` was sent."""
    try:
        config = _configs().get(name)
        hook = build_hook(config) if config else None
    except (SourceConfigError, ValueError) as exc:
        log.error("webhook %r cannot run: %s", name, exc)
        return _error(500, "this webhook is misconfigured; the Pulse server log says how")
    if hook is None:
        return _error(404, f"no webhook named {name!r}")
    if isinstance(hook, TwilioHook):
        return _twilio(name, hook)
    return _signed_json(name, hook)


def _error(status: int, message: str, **extra: Any) -> ResponseReturnValue:
    return jsonify(error=message, **extra), status


def _store(name: str, kind: str, raws: list[RawMessage]) -> tuple[int, int]:
    context = pulse()
    with write_session(context.engine) as session:
        return store_messages(session, context.settings, name, kind, raws)


def _twilio(name: str, hook: TwilioHook) -> ResponseReturnValue:
    request.max_content_length = TWILIO_MAX_BYTES
    signature = request.headers.get("X-Twilio-Signature", "")
    try:
        form = request.form
    except RequestEntityTooLarge:
        return _error(413, f"the request is larger than {TWILIO_MAX_BYTES} bytes")
    url = hook.public_url or request.url
    if not signature or not RequestValidator(hook.auth_token).validate(url, form, signature):
        log.warning(
            "webhook %r: refused a request with a missing or wrong Twilio signature "
            "(URL checked: %s; behind a proxy set public_url)",
            name,
            url,
        )
        return Response("missing or wrong X-Twilio-Signature", 403, mimetype="text/plain")
    sid = form.get("MessageSid")
    if not sid:
        return Response(
            "no MessageSid: point only a messaging webhook here", 400, mimetype="text/plain"
        )
    metadata: dict[str, Any] = {
        key: form[field] for field, key in TWILIO_METADATA.items() if form.get(field)
    }
    if str(metadata.get("num_media", "")).isdigit():
        metadata["num_media"] = int(metadata["num_media"])
    raw = RawMessage(
        source_name=name,
        external_id=sid,
        received_at=datetime.now(UTC),
        body=form.get("Body", ""),
        author=form.get("From") or None,
        metadata=metadata,
    )
    _store(name, "sms", [raw])
    reply = MessagingResponse()
    if hook.auto_reply:
        reply.message(hook.auto_reply)
    return Response(str(reply), 200, mimetype="application/xml")


def _signed_json(name: str, hook: SignedJsonHook) -> ResponseReturnValue:
    request.max_content_length = hook.max_bytes
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _error(413, f"the body is larger than this webhook's {hook.max_bytes} bytes")
    given = request.headers.get(SIGNATURE_HEADER, "").strip().lower()
    expected = pulse_signature(hook.secret, body)
    if not hmac.compare_digest(expected.encode(), given.encode("latin-1", "replace")):
        log.warning(
            "webhook %r: refused a request with a missing or wrong %s", name, SIGNATURE_HEADER
        )
        return _error(
            403,
            f"missing or wrong {SIGNATURE_HEADER}: send sha256=<hex HMAC-SHA256 "
            "of the raw body keyed with the webhook's secret>",
        )
    try:
        payload = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return _error(400, "the body is not UTF-8 text: send the JSON encoded as UTF-8")
    except json.JSONDecodeError as exc:
        return _error(400, f"the body is not valid JSON: {exc}")
    items = payload if isinstance(payload, list) else [payload]
    raws = []
    for index, item in enumerate(items):
        try:
            raws.append(_json_raw(name, hook.kind, item, pulse().settings.tz))
        except BadRow as exc:
            return _error(400, f"item {index}: {exc}", index=index)
    received, new = _store(name, hook.kind, raws)
    return jsonify(received=received, new=new)


def _json_raw(name: str, kind: str, item: Any, tz: ZoneInfo) -> RawMessage:
    return replace(record_to_raw(item, tz), source_name=name, source_kind=kind)
