"""Risk queue page: analysts only, message text kept literal (a `<script>` body stays text), every
sending of text audited, confirm/dismiss with a reason through topics/risk_review.py."""

from __future__ import annotations

import pytest
from dash_client import add_flagged, call_callback, login, make_dashboard, response_of
from pydantic import SecretStr
from sqlalchemy import func, select

from core.db import read_session
from core.models import AuditLog, Message
from dashboard.risk_view import review, show_queue

XSS = '<script>alert("pwned")</script><img src=x onerror=alert(1)> I will hurt myself tonight'
OUTPUTS = [("risk-grid", "rowData"), ("risk-signature", "data"), ("risk-status", "children")]


@pytest.fixture
def dashboard(settings):
    dash_app, engine = make_dashboard(settings.model_copy(update={"secret_key": SecretStr("t")}))
    yield dash_app, engine
    engine.dispose()


def reads(engine) -> int:
    with read_session(engine) as session:
        return session.scalar(
            select(func.count(AuditLog.id)).where(AuditLog.action == "read_message")
        )


def press(client, button: str | None, selected_ids: list[int], reason: str | None, seen=None):
    inputs = [("risk-tick", "n_intervals", 1), ("risk-reviewed", "value", False)]
    inputs += [
        (f"risk-{b}", "n_clicks", 1 if b == button else None) for b in ("confirm", "dismiss")
    ]
    state = [
        ("risk-grid", "selectedRows", [{"id": i} for i in selected_ids]),
        ("risk-reason", "value", reason),
        ("risk-signature", "data", seen),
    ]
    changed = [f"risk-{button}.n_clicks"] if button else None
    return call_callback(client, OUTPUTS, inputs, state, changed)


def test_the_queue_is_for_analysts_and_each_sending_of_text_is_audited(dashboard, settings):
    _app, engine = dashboard
    urgent, review_level = add_flagged(engine, XSS), add_flagged(engine, "sad today", "review")
    with pytest.raises(PermissionError, match="needs the analyst role; you are viewer"):
        show_queue(engine, "vera", "viewer", False, None, settings.tz)
    assert reads(engine) == 0
    rows, signature = show_queue(engine, "anna", "analyst", False, None, settings.tz)
    assert [(r["id"], r["level"], r["body"]) for r in rows] == [
        (urgent, "urgent", XSS),  # urgent first, the text exactly as stored
        (review_level, "review", "sad today"),
    ]
    assert reads(engine) == 2
    assert show_queue(engine, "anna", "analyst", False, signature, settings.tz) is None
    assert reads(engine) == 2  # nothing sent, nothing logged
    review(engine, "dismiss", [review_level], "just a bad day", "anna", "analyst")
    rows, _ = show_queue(engine, "anna", "analyst", False, signature, settings.tz)
    assert [r["id"] for r in rows] == [urgent] and reads(engine) == 3


def test_reviews_need_a_reason_and_an_analyst(dashboard):
    _app, engine = dashboard
    message_id = add_flagged(engine, XSS)
    with pytest.raises(PermissionError):
        review(engine, "confirm", [message_id], "real", "vera", "viewer")
    with pytest.raises(ValueError, match="no reason given"):
        review(engine, "confirm", [message_id], "  ", "anna", "analyst")
    with pytest.raises(ValueError, match="no message selected"):
        review(engine, "confirm", [], "real", "anna", "analyst")
    assert review(engine, "confirm", [message_id], "called the family", "anna", "analyst") == (
        f"confirmed message {message_id}"
    )
    with read_session(engine) as session:
        message = session.get_one(Message, message_id)
    assert (message.risk_review, message.risk_reviewed_by, message.risk_review_reason) == (
        "confirmed",
        "anna",
        "called the family",
    )


def test_the_page_confirms_and_dismisses_through_the_review_module(dashboard):
    dash_app, engine = dashboard
    first, second = add_flagged(engine, XSS), add_flagged(engine, "I want to die lol", "review")
    client = dash_app.server.test_client()
    login(client, "anna")
    missing = press(client, "dismiss", [second], None)
    assert "no reason given" in str(response_of(missing, "risk-status", "children"))
    dismissed = press(client, "dismiss", [second], "a joke about homework")
    assert f"dismissed message {second}" in str(response_of(dismissed, "risk-status", "children"))
    assert [r["id"] for r in response_of(dismissed, "risk-grid", "rowData")] == [first]
    confirmed = press(client, "confirm", [first], "counsellor called")
    assert response_of(confirmed, "risk-grid", "rowData") == []
    with read_session(engine) as session:
        reviewed = dict(session.execute(select(Message.id, Message.risk_review)).all())
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.action.like("risk_%")).order_by(AuditLog.id)
        ).all()
    assert reviewed == {first: "confirmed", second: "dismissed"}
    assert actions == ["risk_dismiss", "risk_confirm"]


def test_message_text_stays_literal_text_on_the_page(dashboard):
    dash_app, engine = dashboard
    add_flagged(engine, XSS, subject="<b>urgent</b>")
    client = dash_app.server.test_client()
    login(client, "anna")
    page = call_callback(
        client,
        [("_pages_content", "children"), ("_pages_store", "data")],
        [("_pages_location", "pathname", "/risk"), ("_pages_location", "search", "")],
    )
    layout = page.text
    assert '"field":"body"' in layout  # the grid shows the body column ...
    for html_path in ("dangerously", "Markdown", "cellRenderer", "innerHTML"):
        assert html_path not in layout  # ... with AG Grid's default text cells, nothing as HTML
    reply = press(client, None, [], None)
    row = response_of(reply, "risk-grid", "rowData")[0]
    assert (row["body"], row["subject"]) == (XSS, "<b>urgent</b>")
    shown = call_callback(
        client, [("risk-text", "children")], [("risk-grid", "selectedRows", [row])]
    )
    assert response_of(shown, "risk-text", "children") == f"<b>urgent</b>\n\n{XSS}"  # a string
