"""One message ``/message/<id>`` (analysts): normalised text, source, time, language, sentiment,
risk. The raw original and the sender's address are shown to admins only (they hold headers,
addresses and phone numbers). Every view is audit-logged, the raw one separately.

Text is always rendered as text: a body holding ``<script>`` shows literally.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

from dashboard.access import audit_message_read, current_username, role_at_least
from dashboard.context import pulse
from dashboard.data import get_message, get_topic, risk_text

dash.register_page(
    __name__,
    path_template="/message/<message_id>",
    title="Pulse · Message",
    name="Message",
    min_role="analyst",
)

RAW_ROLE = "admin"


def _row(name: str, value: str) -> html.Tr:
    return html.Tr([html.Th(name, className="text-muted fw-normal pe-3"), html.Td(value)])


def layout(message_id: str | None = None, **_query: str) -> html.Div | dbc.Alert:
    """The message; analysts only, the raw original for admins."""
    if not role_at_least("analyst"):
        return dbc.Alert(
            "Message text is visible to analysts.", color="warning", id="message-denied"
        )
    if not (message_id or "").isdigit():
        return dbc.Alert(
            f"Message {message_id!r}: give a message number, e.g. /message/42", color="warning"
        )
    context = pulse()
    message = get_message(context.engine, int(message_id))
    if message is None:
        return dbc.Alert(
            f"There is no message {message_id}.", color="warning", id="message-missing"
        )
    username = current_username()
    audit_message_read(context.engine, username, [message.id])
    topic = get_topic(context.engine, message.topic_id) if message.topic_id is not None else None
    received = message.received_at.astimezone(context.settings.tz)
    facts = [
        _row("Received", f"{received:%Y-%m-%d %H:%M:%S %Z}"),
        _row("Source", f"{message.source_name} ({message.source_kind})"),
        _row("School", message.school or "–"),
        _row("Language", message.language or "unknown"),
        _row("Sentiment", "–" if message.sentiment is None else f"{message.sentiment:+.2f}"),
        _row("Risk", risk_text(message)),
    ]
    children = [
        html.H5(message.subject or f"Message #{message.id}", id="message-subject"),
        html.Table(html.Tbody(facts), className="table table-sm w-auto mb-3"),
        html.Div(
            [
                "Topic: ",
                html.A(topic.display_label, href=f"/topics/{topic.id}") if topic else "unassigned",
            ],
            className="mb-3",
        ),
        dbc.Card(dbc.CardBody(html.Pre(message.body, id="message-body", className="message-text"))),
    ]
    if role_at_least(RAW_ROLE):
        audit_message_read(context.engine, username, [message.id], action="read_raw_message")
        children += [
            html.H6("Original (admins only)", className="mt-4"),
            html.Div(f"From: {message.author or '–'}", id="message-author", className="small"),
            html.Pre(
                message.raw or "(no original kept)", id="message-raw", className="message-text"
            ),
        ]
    return html.Div(children)
