"""Drive the dashboard through Flask's test client as a browser would: sign in with the form's
CSRF token, and call Dash callbacks over ``/_dash-update-component`` (auth hook included).

Dash hands the callbacks registered with ``dash.callback`` to the first app that serves a
request, so a test calls them through the app it created last.
"""

from __future__ import annotations

import re
from typing import Any

from dash import Dash
from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from werkzeug.test import TestResponse

from core.db import create_db_engine, migrate, read_session, write_connection
from core.messages import NewMessage, upsert_messages
from core.models import Message, utcnow
from core.settings import Settings
from core.users import add_user

PASSWORD = "correct horse battery"
ROLE_USERS = {"viewer": "vera", "analyst": "anna", "admin": "adam"}


def make_dashboard(settings: Settings) -> tuple[Dash, Engine]:
    """A migrated database with one user per signed-in role (all with PASSWORD), and the app."""
    from dashboard.app import create_app

    engine = create_db_engine(settings.resolved_database_url)
    migrate(engine)
    for role, username in ROLE_USERS.items():
        add_user(engine, username, PASSWORD, role)
    return create_app(settings, engine), engine


def add_flagged(
    engine: Engine, body: str, level: str = "urgent", subject: str | None = None
) -> int:
    """Store one message flagged at ``level`` as ingest would (text as given); its id."""
    message = NewMessage(
        "sms", "sms", f"flag-{body[:20]}-{level}", utcnow(), body, f"h-{body}", subject=subject,
        risk_level=level, risk_categories=["violence"], risk_score=0.9,
    )  # fmt: skip
    with write_connection(engine) as conn:
        upsert_messages(conn, [message])
    with read_session(engine) as session:
        return session.scalar(select(Message.id).where(Message.body == body))


def csrf_from(page: str) -> str:
    """The CSRF token of the sign-in form in ``page``."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match[1]


def login(
    client: FlaskClient, username: str, password: str = PASSWORD, **extra: str
) -> TestResponse:
    """Open the sign-in form and post it back, as a browser does."""
    token = csrf_from(client.get("/login").text)
    form = {"csrf_token": token, "username": username, "password": password, **extra}
    return client.post("/login", data=form)


def call_callback(
    client: FlaskClient,
    outputs: list[tuple[str, str]],
    inputs: list[tuple[str, str, Any]],
    state: list[tuple[str, str, Any]] = (),
    changed: list[str] | None = None,
) -> TestResponse:
    """POST one callback request like Dash's renderer: outputs (id, property); inputs and state
    (id, property, value); ``changed`` defaults to the first input."""

    def props(items: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
        return [{"id": i, "property": p, "value": v} for i, p, v in items]

    output_specs = [{"id": i, "property": p} for i, p in outputs]
    if len(outputs) == 1:
        output = f"{outputs[0][0]}.{outputs[0][1]}"
        output_field: Any = output_specs[0]
    else:
        output = ".." + "...".join(f"{i}.{p}" for i, p in outputs) + ".."
        output_field = output_specs
    first = inputs[0]
    body = {
        "output": output,
        "outputs": output_field,
        "inputs": props(inputs),
        "state": props(list(state)),
        "changedPropIds": changed or [f"{first[0]}.{first[1]}"],
    }
    return client.post("/_dash-update-component", json=body)


def response_of(reply: TestResponse, component: str, prop: str) -> Any:
    """The value a callback reply sets on ``component``'s ``prop``."""
    assert reply.status_code == 200, (reply.status_code, reply.text[:500])
    return reply.get_json()["response"][component][prop]
