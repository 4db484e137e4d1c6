"""Alert emails: one email (subject, text, HTML) for one alert or a group fired together.

The HTML embeds a small sparkline PNG per alert as a ``data:`` URI; the mailer turns it into an
inline ``cid:`` part. Sample messages are shortened and have email addresses, phone numbers and
links masked; the HTML template escapes everything it is given. A ``link_only`` summary (risk
alerts to recipients not cleared to read messages) carries no message text and no top words:
only what fired, how much, and the link to the dashboard, where access is checked.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.settings import Settings
from topics.vocabulary import DOMAIN, EMAIL, PHONE, URL

TEMPLATES = Path(__file__).resolve().parent / "templates"
SAMPLE_CHARS = 280
SUBJECT_CHARS = 160
KIND_TITLES = {
    "spike": "Spike",
    "emerging": "New topic",
    "risk": "Risk",
    "source_down": "Source down",
}
KIND_COLOURS = {
    "spike": "#d9480f",
    "emerging": "#1c7ed6",
    "risk": "#c92a2a",
    "source_down": "#495057",
}
# A phone number with an optional opening parenthesis: "(555) 123-4567" is masked whole.
_PHONE = re.compile(r"\(?" + PHONE.pattern)
_TRAILING_NON_DIGITS = re.compile(r"\D*$")

# The email templates (alerts and the daily digest): HTML autoescaped, text verbatim.
template_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(
        enabled_extensions=("html.j2",), disabled_extensions=("txt.j2",), default=True
    ),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass
class AlertSummary:
    """What an alert email says about one alert."""

    kind: str  # spike | emerging | risk | source_down
    label: str  # the topic's label, the risk category or the source's name
    window_start: datetime
    window_end: datetime
    topic_id: int | None = None
    top_words: list[str] = field(default_factory=list)
    observed: float | None = None
    expected: float | None = None
    p_value: float | None = None
    samples: list[str] = field(default_factory=list)
    series: list[float] = field(default_factory=list)  # counts per hour, oldest first
    link_only: bool = False
    path: str | None = None  # dashboard path of the drill-down; default from kind and topic


class RenderedEmail(NamedTuple):
    """An email ready for :func:`alerts.outbox.enqueue`."""

    subject: str
    text: str
    html: str


def mask_pii(text: str) -> str:
    """``text`` with email addresses, links and phone numbers replaced by placeholders."""
    text = EMAIL.sub("[email]", text)
    text = URL.sub("[link]", text)
    text = DOMAIN.sub("[link]", text)
    return _PHONE.sub(lambda m: "[phone]" + _TRAILING_NON_DIGITS.search(m.group()).group(), text)


def sample_text(message: str) -> str:
    """A sample message as emails show it: masked, on one line, at most ``SAMPLE_CHARS`` long."""
    text = " ".join(mask_pii(message).split())
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1].rstrip() + "…"


def drilldown_url(summary: AlertSummary, public_url: str) -> str:
    """The dashboard page that explains ``summary``: the topic over the alert's window."""
    if summary.path is not None:
        path = summary.path
    elif summary.topic_id is not None:
        window = {"from": _iso(summary.window_start), "to": _iso(summary.window_end)}
        path = f"/topics/{summary.topic_id}?{urlencode(window)}"
    else:
        path = {"risk": "/risk", "source_down": "/sources"}.get(summary.kind, "/alerts")
    return public_url.rstrip("/") + path


def sparkline_png(series: Sequence[float], colour: str = "#d9480f") -> bytes:
    """A small line chart of ``series`` with its last point marked, as PNG bytes."""
    fig = Figure(figsize=(2.4, 0.5), dpi=100)
    ax = fig.add_axes((0.01, 0.08, 0.98, 0.84))
    xs = range(len(series))
    ax.fill_between(xs, series, color=colour, alpha=0.15, linewidth=0)
    ax.plot(xs, series, color=colour, linewidth=1.4)
    ax.plot([len(series) - 1], [series[-1]], "o", color=colour, markersize=3)
    ax.set_ylim(bottom=0)
    ax.set_axis_off()
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": None})
    return buffer.getvalue()


def render_alert_email(
    summaries: AlertSummary | Sequence[AlertSummary], settings: Settings
) -> RenderedEmail:
    """One email for the alerts in ``summaries`` (one, or several fired together)."""
    group = [summaries] if isinstance(summaries, AlertSummary) else list(summaries)
    if not group:
        raise ValueError("render_alert_email needs at least one alert")
    alerts = [_context(s, settings) for s in group]
    if len(alerts) == 1:
        subject = f"[Pulse] {alerts[0]['headline']}"
    else:
        titles = "; ".join(a["title"] for a in alerts)
        subject = f"[Pulse] {len(alerts)} alerts: {titles}"
    subject = " ".join(subject.split())
    if len(subject) > SUBJECT_CHARS:
        subject = subject[: SUBJECT_CHARS - 1].rstrip() + "…"
    values = {
        "subject": subject,
        "alerts": alerts,
        "district": settings.district_name,
        "alerts_url": settings.public_url.rstrip("/") + "/alerts",
    }
    text = template_env.get_template("alert.txt.j2").render(values)
    html = template_env.get_template("alert.html.j2").render(values)
    return RenderedEmail(subject, text, html)


def _context(summary: AlertSummary, settings: Settings) -> dict[str, Any]:
    if summary.kind not in KIND_TITLES:
        raise ValueError(f"unknown alert kind {summary.kind!r}")
    title = f"{KIND_TITLES[summary.kind]}: {summary.label}"
    colour = KIND_COLOURS[summary.kind]
    image = None
    if len(summary.series) >= 2:
        encoded = base64.b64encode(sparkline_png(summary.series, colour)).decode()
        image = f"data:image/png;base64,{encoded}"
    return {
        "title": title,
        "headline": _headline(summary, title),
        "colour": colour,
        "facts": _facts(summary, settings),
        "words": [] if summary.link_only else summary.top_words,
        "samples": [] if summary.link_only else [sample_text(m) for m in summary.samples],
        "link_only": summary.link_only,
        "url": drilldown_url(summary, settings.public_url),
        "image": image,
    }


def _headline(summary: AlertSummary, title: str) -> str:
    if summary.observed is None or summary.kind == "source_down":
        return title
    observed = messages_text(summary.observed)
    if summary.kind == "risk":
        return f"{title}: {observed} to review"
    usual = f" (usually {number_text(summary.expected)})" if summary.expected is not None else ""
    return f"{title}: {observed} in {_hours(summary)}{usual}"


def _facts(summary: AlertSummary, settings: Settings) -> list[str]:
    start = summary.window_start.astimezone(settings.tz)
    end = summary.window_end.astimezone(settings.tz)
    if start.date() == end.date():
        span = f"{_day(start)} {start:%H:%M}–{end:%H:%M %Z}"
    else:
        span = f"{_day(start)} {start:%H:%M} – {_day(end)} {end:%H:%M %Z}"
    facts = [f"Window: {_hours(summary)}, {span}"]
    if summary.observed is not None:
        seen = messages_text(summary.observed)
        if summary.expected is not None:
            seen += f"; usually about {number_text(summary.expected)} at this time"
            if summary.expected > 0:
                seen += f" ({summary.observed / summary.expected:.1f}×)"
        facts.append(seen)
    if summary.p_value is not None:
        p = "p < 0.001" if summary.p_value < 0.001 else f"p = {summary.p_value:.3f}"
        facts.append(f"Chance of this by normal variation: {p}")
    return facts


def _day(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b}"


def messages_text(count: float) -> str:
    """``count`` with its noun: "1 message", "12 messages", "2.5 messages"."""
    return f"{number_text(count)} message{'' if count == 1 else 's'}"


def _hours(summary: AlertSummary) -> str:
    hours = (summary.window_end - summary.window_start).total_seconds() / 3600
    return f"{hours:g} h"


def number_text(value: float) -> str:
    """A count or expected count for people: whole from 10 on, else to one decimal if needed."""
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
