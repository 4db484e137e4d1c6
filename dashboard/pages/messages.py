"""Message list ``/messages`` (analysts): the messages behind a word, a heatmap cell or a topic.

The query string says which: the overview's filters plus ``topic``, ``word``, ``hour``/``day``
and ``q`` (see :meth:`dashboard.data.MessageQuery.from_query`). Every message shown is
audit-logged.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import html

from core.models import utcnow
from core.settings import Settings
from dashboard.access import audit_message_read, current_username, role_at_least
from dashboard.context import pulse
from dashboard.data import MessageQuery, find_messages, get_topic, message_rows, topic_labels
from dashboard.pages.topic import grid_callbacks, message_grid

dash.register_page(
    __name__, path="/messages", title="Pulse · Messages", name="Messages", min_role="analyst"
)


def describe(query: MessageQuery, labels: dict[int, str], settings: Settings) -> str:
    """A one-line description of what the list holds."""
    tz = settings.tz
    parts = []
    if query.word:
        parts.append(f"containing “{query.word}”")
    if query.topic_id is not None:
        parts.append(f"in topic “{labels.get(query.topic_id, f'#{query.topic_id}')}”")
    for name, value in (
        ("channel", query.filters.source_kind),
        ("school", query.filters.school),
        ("language", query.filters.language),
    ):
        if value:
            parts.append(f"{name} {value}")
    since, until = query.since.astimezone(tz), query.until.astimezone(tz)
    span = f"{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}"
    return " · ".join(["Messages", *parts, span])


def layout(**query: str) -> html.Div:
    """The filtered message list; analysts only."""
    if not role_at_least("analyst"):
        return dbc.Alert(
            "Message text is visible to analysts.", color="warning", id="messages-denied"
        )
    context = pulse()
    try:
        wanted = MessageQuery.from_query(query, utcnow(), context.settings)
    except ValueError as exc:
        return dbc.Alert(str(exc), color="warning", id="messages-error")
    found = find_messages(context.engine, wanted)
    labels = topic_labels(context.engine, found)
    topic = get_topic(context.engine, wanted.topic_id) if wanted.topic_id is not None else None
    if topic is not None:  # named in the title even when no message matched
        labels[topic.id] = topic.display_label
    audit_message_read(context.engine, current_username(), [m.id for m in found])
    rows = message_rows(found, labels, context.settings, with_text=True)
    return html.Div(
        [
            html.H5(describe(wanted, labels, context.settings), id="messages-title"),
            html.Div(
                f"{len(rows)} messages (newest first)",
                className="text-muted small mb-2",
                id="messages-count",
            ),
            message_grid("messages-grid", rows, "messages.csv"),
        ]
    )


grid_callbacks("messages-grid")
