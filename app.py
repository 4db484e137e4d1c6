"""Pulse command line: a thin layer over the plain Python API of core/, ingestion/, dashboard/."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

import click
from pydantic import ValidationError
from sqlalchemy import Engine

from core.db import create_db_engine, migrate
from core.export import EXPORT_FORMATS, export_audit_log, export_messages
from core.models import ALERT_KINDS, ROLES, utcnow
from core.queries import source_health, topic_list
from core.settings import Settings
from core.users import UserError, add_user, ensure_first_admin, list_users
from core.worker import (
    configured_sources,
    schedule_alert_jobs,
    schedule_digest_job,
    schedule_jobs,
    schedule_retention_job,
    schedule_topic_jobs,
)
from dashboard.tables import source_health_rows
from ingestion.base import Connector
from ingestion.errors import SourceConfigError
from ingestion.files import FORMATS, BadRow, import_file, import_size
from ingestion.runner import sync_source
from ingestion.sources import load_sources
from topics.embeddings import load_embedder
from topics.risk_review import ReviewError, confirm, dismiss, review_queue


def load_settings() -> Settings:
    """The PULSE_* settings (a mistake stops the command with its message); logging set up."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise click.ClickException(f"bad configuration (PULSE_* settings):\n{exc}") from exc
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per job run
    return settings


class Runtime:
    """Settings and a migrated database engine, made once per command."""

    def __init__(self) -> None:
        self.settings = load_settings()
        self.engine: Engine = create_db_engine(self.settings.resolved_database_url)
        migrate(self.engine)


def _serve_web(runtime: Runtime, host: str | None, port: int | None) -> None:
    from dashboard.app import create_app  # Dash is imported only by commands that serve it

    host = host or runtime.settings.host
    port = port or runtime.settings.port
    app = create_app(runtime.settings, runtime.engine)
    click.echo(f"Pulse dashboard: http://{host}:{port}/", err=True)
    if not list_users(runtime.engine):
        click.echo(
            "No dashboard users yet: add one to sign in with "
            "`python app.py users add NAME --role admin`",
            err=True,
        )
    app.run(host=host, port=port, debug=False)


def _sources(runtime: Runtime, demo: bool) -> list[Connector]:
    try:
        return configured_sources(runtime.settings, demo=demo)
    except SourceConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _stop_on_sigterm() -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, handler)


@click.group()
def cli() -> None:
    """Pulse: what a school district's community is writing about, live."""


@cli.command()
@click.option("--host", help="Address to listen on (default: PULSE_HOST).")
@click.option("--port", type=int, help="Port to listen on (default: PULSE_PORT).")
@click.option("--demo/--no-demo", default=True, show_default=True, help="Run the demo source.")
def run(host: str | None, port: int | None, demo: bool) -> None:
    """Everything on one box: migrations, a worker process and the dashboard."""
    runtime = Runtime()
    _sources(runtime, demo=demo)  # a broken sources file stops here, with its message
    password = ensure_first_admin(runtime.engine)
    if password:
        click.echo(f"First run: sign in as admin with password {password} (shown once; add "
                   "people with `python app.py users add NAME --role ROLE`)", err=True)  # fmt: skip
    env = {**os.environ, "PULSE_DEMO_ENABLED": "true" if demo else "false"}
    # The worker (ingestion, topic model) runs in its own process, so a refit never slows the
    # dashboard; it stops with this command.
    worker_process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "worker"],
                                      env=env)  # fmt: skip
    _stop_on_sigterm()
    try:
        _serve_web(runtime, host, port)
    finally:
        worker_process.terminate()
        try:
            worker_process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker_process.kill()


@cli.command()
@click.option("--host", help="Address to listen on (default: PULSE_HOST).")
@click.option("--port", type=int, help="Port to listen on (default: PULSE_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """The dashboard alone (development server; use gunicorn in production, see README)."""
    _stop_on_sigterm()
    _serve_web(Runtime(), host, port)


@cli.command()
def worker() -> None:
    """The background worker: scheduled ingestion (run exactly one)."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    runtime = Runtime()
    scheduler = BlockingScheduler(timezone=runtime.settings.tz)
    sources = _sources(runtime, demo=runtime.settings.demo_enabled)
    schedule_jobs(scheduler, runtime.engine, runtime.settings, sources)
    schedule_topic_jobs(scheduler, runtime.engine, runtime.settings)
    try:
        schedule_alert_jobs(scheduler, runtime.engine, runtime.settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    schedule_digest_job(scheduler, runtime.engine, runtime.settings)
    schedule_retention_job(scheduler, runtime.engine, runtime.settings)
    _stop_on_sigterm()
    click.echo(f"Pulse worker: {len(sources)} source(s) and the topic jobs scheduled", err=True)
    scheduler.start()


@cli.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date (every other command does this on start too)."""
    Runtime()
    click.echo("database is up to date", err=True)


@cli.command("import")
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), help="File format (default: from its extension)."
)
def import_command(file: Path, fmt: str | None) -> None:
    """Import messages from a JSONL, CSV or mbox FILE, or a folder of .eml files.

    Bad lines or messages are reported with their position and skipped.
    """
    runtime = Runtime()
    size = import_size(file)
    try:
        with click.progressbar(length=size, label=f"Importing {file.name}", file=sys.stderr) as bar:
            seen = 0

            def advance(position: int) -> None:
                nonlocal seen
                bar.update(position - seen)
                seen = position

            report = import_file(runtime.engine, file, runtime.settings, fmt, advance)
    except BadRow as exc:
        raise click.ClickException(str(exc)) from exc
    for line, reason in report.errors:
        click.echo(f"{file.name}:{line}: skipped: {reason}", err=True)
    click.echo(
        f"{report.rows} rows: {report.new} new, {report.duplicates} already stored, "
        f"{len(report.errors)} skipped"
    )


@cli.group()
def sources() -> None:
    """Inspect and test the configured sources (PULSE_SOURCES_FILE)."""


@sources.command("list")
def sources_list() -> None:
    """Check the sources file and list its sources and webhooks."""
    runtime = Runtime()
    try:
        config = load_sources(runtime.settings)
    except SourceConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    for connector in config.sources:
        click.echo(f"{connector.name}\t{connector.kind}\tevery {connector.interval_seconds} s")
    for hook in config.webhooks:
        click.echo(f"{hook.name}\t{hook.type} webhook\tPOST /webhooks/{hook.name}")
    if not config.sources and not config.webhooks:
        click.echo(f"no sources configured in {runtime.settings.sources_file}", err=True)


@sources.command("sync")
@click.argument("name")
def sources_sync(name: str) -> None:
    """Pull source NAME once now, as the worker would (retries included)."""
    runtime = Runtime()
    found = {c.name: c for c in _sources(runtime, demo=True)}
    if name not in found:
        raise click.ClickException(f"no source {name!r}; configured: {', '.join(sorted(found))}")
    result = sync_source(runtime.engine, found[name], runtime.settings)
    if result.error:
        raise click.ClickException(f"{name}: {result.error}")
    click.echo(f"{name}: {result.fetched} fetched, {result.new} new")


@sources.command("status")
def sources_status() -> None:
    """Each source's health: status, last success, failures, totals, last error."""
    runtime = Runtime()
    now = utcnow()
    health = source_health(runtime.engine, now, runtime.settings.source_down_intervals)
    for row in source_health_rows(health, now, runtime.settings.tz):
        error = f"\t{row['last_error']}" if row["last_error"] else ""
        click.echo(
            f"{row['source']}\t{row['status']}\tlast success {row['last_success']}\t"
            f"{row['messages']} messages\t{row['failed_syncs']} failed syncs{error}"
        )


@cli.command("analyze")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="Default: stdout."
)
def analyze_command(file: Path, output: click.utils.LazyFile) -> None:
    """Language, sentiment, risk and topic of each message of a JSONL FILE, as JSON lines.

    Uses the current topic model; with none yet, fits one on the file.
    """
    from topics.analyze import analyze_file

    runtime = Runtime()
    embedder = load_embedder(runtime.settings.embedding_model, runtime.settings.embedding_threads)
    report = analyze_file(runtime.engine, runtime.settings, embedder, file, output)
    for line, reason in report.errors:
        click.echo(f"{file.name}:{line}: skipped: {reason}", err=True)
    model = "a model fitted on the file" if report.fitted_on_file else "the current model"
    click.echo(f"analysed {report.written} of {report.rows} lines with {model}", err=True)


@cli.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--alerts-out",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="Write the alerts here as JSON lines (default: stdout).",
)
@click.option(
    "--sensitivity",
    type=click.Choice(["low", "balanced", "high"]),
    help="Spike sensitivity to replay with (default: PULSE_ALERT_SENSITIVITY).",
)
@click.option(
    "--calendar",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="School calendar file (default: PULSE_CALENDAR_FILE).",
)
@click.option(
    "--refit-hours",
    type=click.FloatRange(min=0, min_open=True),
    help="Refit the topics every this many simulated hours (default: PULSE_REFIT_INTERVAL_HOURS).",
)
@click.option(
    "--warm-up-days",
    type=click.FloatRange(min=0),
    default=7.0,
    show_default=True,
    help="Simulated days of history before the first refit.",
)
def replay_command(
    file: Path,
    alerts_out: click.utils.LazyFile,
    sensitivity: str | None,
    calendar: Path | None,
    refit_hours: float | None,
    warm_up_days: float,
) -> None:
    """Replay the message history FILE (JSONL) in simulated time through the live pipeline and
    alert engine, in a temporary database: no email is sent, nothing sleeps. Writes the alerts
    that would have fired and prints how many a week."""
    from alerts.replay import replay_file, write_alerts

    settings = load_settings()
    overrides = {
        "alert_sensitivity": sensitivity,
        "calendar_file": calendar.resolve() if calendar else None,
        "refit_interval_hours": refit_hours,
    }
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    for name in ("topics", "core.worker", "alerts"):  # the progress bar says what happens
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    embedder = load_embedder(settings.embedding_model, settings.embedding_threads)
    click.echo(f"reading {file.name}…", err=True)
    with click.progressbar(
        length=1, label="Replaying", file=sys.stderr, show_pos=True, item_show_func=str
    ) as bar:

        def advance(done: int, now: datetime) -> None:
            bar.length = max(bar.length or 1, done)
            bar.update(done - bar.pos, f"{now.astimezone(settings.tz):%Y-%m-%d %H:%M}")

        try:
            report = replay_file(
                file, settings, embedder, warm_up=timedelta(days=warm_up_days), on_progress=advance
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    for line, reason in report.errors:
        click.echo(f"{file.name}:{line}: skipped: {reason}", err=True)
    write_alerts(report.alerts, alerts_out)
    kinds = ("spike", "emerging", "risk")
    fired = ", ".join(f"{sum(a['kind'] == k for a in report.alerts)} {k}" for k in kinds)
    click.echo(
        f"{report.messages} messages over {report.weeks:.1f} weeks in {report.seconds:.0f} s "
        f"({report.refits} refits, {report.evaluations} evaluations): alerts fired: {fired} "
        f"({report.per_week('spike'):.2f} spike alerts a week at "
        f"{settings.alert_sensitivity}); {report.emails} emails queued, none sent",
        err=True,
    )


@cli.command("refit")
def refit_command() -> None:
    """Refit the topic model now on the configured window (the worker also does this)."""
    from topics.refit import refit  # BERTopic loads only for this command

    runtime = Runtime()
    click.echo(f"refitting topics on the last {runtime.settings.topic_window_days} days…", err=True)
    result = refit(
        runtime.engine,
        runtime.settings,
        load_embedder(runtime.settings.embedding_model, runtime.settings.embedding_threads),
    )
    click.echo(
        f"{result.n_docs} messages, {result.n_topics} topics ({result.topics_created} new, "
        f"{result.topics_kept} kept, {result.topics_retired} retired), "
        f"{result.outlier_share:.0%} unassigned, {result.duration_s:.1f} s"
    )


@cli.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Also retired and merged topics.")
@click.pass_context
def topics(context: click.Context, show_all: bool) -> None:
    """List topics: id, size, label and top words (`topics rename` relabels one)."""
    if context.invoked_subcommand is not None:
        return
    listed = topic_list(Runtime().engine, include_inactive=show_all)
    if not listed:
        click.echo("no topics yet: they appear after the first refit (`app.py refit`)", err=True)
    for topic in listed:
        words = ", ".join(word for word, _ in (topic.words or [])[:8])
        state = "" if topic.status == "active" else f" [{topic.status}]"
        click.echo(f"{topic.id}\t{topic.size}\t{topic.display_label}{state}\t{words}")


@topics.command("rename")
@click.argument("topic_id", type=int)
@click.argument("label", required=False, default="")
def topics_rename(topic_id: int, label: str) -> None:
    """Give TOPIC_ID a LABEL that survives refits (no LABEL: back to the automatic one)."""
    from topics.registry import rename_topic  # keeps the other commands quick to start

    try:
        rename_topic(Runtime().engine, topic_id, label)
    except KeyError as exc:
        raise click.ClickException(f"no topic {topic_id}: see `app.py topics --all`") from exc
    click.echo(f"topic {topic_id}: {label or '(automatic label)'}")


@cli.group()
def risk() -> None:
    """The risk review queue: list flagged messages, confirm or dismiss a flag."""


@risk.command("queue")
@click.option("--all", "show_all", is_flag=True, help="Also messages already reviewed.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def risk_queue(show_all: bool, limit: int) -> None:
    """Flagged messages: unreviewed first, urgent first, by priority, the longest waiting first."""
    now = utcnow()
    for item in review_queue(Runtime().engine, include_reviewed=show_all, limit=limit):
        tags = [
            *item.categories,
            *(["negated"] * item.negated),
            *(["third party"] * item.third_party),
        ]
        review = f"{item.review} by {item.reviewed_by}" if item.review else "waiting"
        hours = item.age(now).total_seconds() / 3600
        text = " ".join(item.body.split())
        click.echo(
            f"{item.id}\t{item.level}\t{item.score:.2f}\t{hours:.1f} h\t{', '.join(tags)}\t"
            f"{review}\t{text[:100]}"
        )


def _review_command(action: str, message_id: int, user: str, reason: str) -> None:
    review = confirm if action == "confirm" else dismiss
    try:
        item = review(Runtime().engine, message_id, user, reason)
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"message {item.id} ({item.level}): {item.review} by {item.reviewed_by}")


@risk.command("confirm")
@click.argument("message_id", type=int)
@click.option("--user", required=True, help="Who confirms (kept in the audit log).")
@click.option("--reason", required=True, help="Why, or what was done.")
def risk_confirm(message_id: int, user: str, reason: str) -> None:
    """Confirm MESSAGE_ID's risk flag."""
    _review_command("confirm", message_id, user, reason)


@risk.command("dismiss")
@click.argument("message_id", type=int)
@click.option("--user", required=True, help="Who dismisses (kept in the audit log).")
@click.option("--reason", required=True, help="Why the flag is wrong.")
def risk_dismiss(message_id: int, user: str, reason: str) -> None:
    """Dismiss MESSAGE_ID's risk flag; its near-duplicates are downgraded from now on."""
    _review_command("dismiss", message_id, user, reason)


@cli.command("digest")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The local date, YYYY-MM-DD (default: yesterday in PULSE_TIMEZONE).",
)
@click.option("--send", is_flag=True, help="Queue it for PULSE_DIGEST_RECIPIENTS and send it now.")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the HTML email (word cloud embedded) to this file.",
)
def digest_command(day: datetime | None, send: bool, html_out: Path | None) -> None:
    """The daily digest of one date: printed as text, written as HTML, or emailed (--send)."""
    from alerts.digest import digest_data, queue_digest, render_digest, yesterday
    from alerts.mailer import send_pending

    if send and html_out:
        raise click.UsageError("use --send or --html, not both")
    runtime = Runtime()
    settings = runtime.settings
    date = day.date() if day else yesterday(settings)
    if send:
        if not settings.digest_recipients.strip():
            raise click.ClickException(
                "PULSE_DIGEST_RECIPIENTS is empty: set it to a comma-separated list of addresses"
            )
        queued = queue_digest(runtime.engine, settings, date)
        report = send_pending(runtime.engine, settings)
        click.echo(
            f"digest {date}: {queued} queued; outbox: {report.sent} sent, "
            f"{report.deferred} deferred, {report.failed} failed"
        )
        if report.error or not settings.smtp_host:
            reason = report.error or "PULSE_SMTP_HOST is not set"
            click.echo(f"emails stay queued: {reason}", err=True)
        return
    email = render_digest(digest_data(runtime.engine, settings, date), settings)
    if html_out:
        html_out.write_text(email.html, encoding="utf-8")
        click.echo(f"wrote {html_out}", err=True)
    else:
        click.echo(email.text, nl=False)


@cli.group()
def export() -> None:
    """Export data."""


@export.command("messages")
@click.option(
    "--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="jsonl", show_default=True
)
@click.option(
    "-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="Default: stdout."
)
def export_messages_command(fmt: str, output: click.utils.LazyFile) -> None:
    """Export every message (the JSONL re-imports with `app.py import`)."""
    count = export_messages(Runtime().engine, fmt, output)
    click.echo(f"exported {count} messages", err=True)


@cli.group()
def users() -> None:
    """Manage dashboard users."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the user may see.")
@click.password_option(help="Prompted for when not given.")
def users_add(username: str, role: str, password: str) -> None:
    """Add a user with a ROLE: wall < viewer < analyst < admin."""
    try:
        add_user(Runtime().engine, username, password, role)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"added {username} ({role})")


@users.command("list")
def users_list() -> None:
    """List users and their roles."""
    for user in list_users(Runtime().engine):
        state = "" if user.active else " (disabled)"
        click.echo(f"{user.username}\t{user.role}{state}")


@cli.group()
def alerts() -> None:
    """Alerts: list them, acknowledge one, silence a kind or topic for a while."""


@alerts.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also resolved alerts.")
def alerts_list(show_all: bool) -> None:
    """Open alerts (pending, firing, acknowledged, silenced), newest first."""
    from alerts.engine import list_alerts

    runtime = Runtime()
    for alert in list_alerts(runtime.engine, include_closed=show_all):
        label = (alert.details or {}).get("label", alert.fingerprint)
        fired = alert.fired_at.astimezone(runtime.settings.tz) if alert.fired_at else None
        when = f"fired {fired:%Y-%m-%d %H:%M}" if fired else "not fired"
        click.echo(f"{alert.id}\t{alert.state}\t{alert.kind}\t{alert.severity}\t{when}\t{label}")


@alerts.command("ack")
@click.argument("alert_id", type=int)
@click.option("--user", required=True, help="Who acknowledges it (recorded in the audit log).")
def alerts_ack(alert_id: int, user: str) -> None:
    """Acknowledge ALERT_ID: no more repeat emails; it still resolves when the signal ends."""
    from alerts.engine import AlertError, acknowledge

    try:
        acknowledge(Runtime().engine, alert_id, user, utcnow())
    except AlertError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"alert {alert_id} acknowledged by {user}")


@alerts.command("silence")
@click.option("--kind", type=click.Choice(ALERT_KINDS), help="Silence this kind of alert.")
@click.option("--topic", "topic_id", type=int, help="Silence alerts about this topic id.")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), required=True)
@click.option("--user", required=True, help="Who silences (recorded in the audit log).")
@click.option("--comment", help="Why, for the others.")
def alerts_silence(
    kind: str | None, topic_id: int | None, hours: float, user: str, comment: str | None
) -> None:
    """Silence alerts of a --kind and/or about a --topic for --hours: recorded, not emailed."""
    from alerts.engine import AlertError, add_silence

    now = utcnow()
    try:
        silence_id = add_silence(
            Runtime().engine, kind, topic_id, now, now + timedelta(hours=hours), user, comment
        )
    except AlertError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"silence {silence_id} until {now + timedelta(hours=hours):%Y-%m-%d %H:%M} UTC")


@cli.group()
def privacy() -> None:
    """Retention purge, per-author erasure and the audit log."""


@privacy.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
def privacy_purge(dry_run: bool) -> None:
    """Blank the text, subject, author and original of messages older than PULSE_RETENTION_DAYS
    (counts, topics, sentiment and risk level stay); the worker does it daily."""
    from core.retention import purge_raw

    runtime = Runtime()
    result = purge_raw(runtime.engine, runtime.settings, utcnow(), dry_run=dry_run)
    if result.cutoff is None:
        click.echo("PULSE_RETENTION_DAYS is 0: messages are kept forever, nothing purged")
        return
    verb = "would purge" if dry_run else "purged"
    click.echo(
        f"{verb} {result.messages} messages received before {result.cutoff:%Y-%m-%d %H:%M} UTC "
        f"({result.embeddings} embeddings)"
    )


@privacy.command("erase-author")
@click.argument("address")
@click.option("--user", required=True, help="Who erases (recorded in the audit log).")
def privacy_erase_author(address: str, user: str) -> None:
    """Delete every message from ADDRESS (email, phone number or handle as the source gave it);
    the counts are corrected and the audit log records the author's hash, never the address."""
    from core.retention import erase_author

    runtime = Runtime()
    try:
        result = erase_author(runtime.engine, runtime.settings, address, user)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"erased {result.messages} messages ({result.embeddings} embeddings) of that author")


@privacy.command("audit-export")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    help="Only entries from this UTC date (YYYY-MM-DD) or time on.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="FILE.csv or FILE.jsonl: the extension chooses the format.",
)
def privacy_audit_export(since: datetime | None, output: Path) -> None:
    """Export the audit log (logins, raw message reads, risk reviews, erasures) as CSV or JSONL."""
    fmt = output.suffix.lstrip(".").lower()
    if fmt not in EXPORT_FORMATS:
        raise click.BadParameter(
            f"{output.name}: name the file .csv or .jsonl", param_hint="'-o' / '--output'"
        )
    engine = Runtime().engine
    with output.open("w", encoding="utf-8", newline="") as out:
        count = export_audit_log(engine, fmt, out, since.replace(tzinfo=UTC) if since else None)
    click.echo(f"exported {count} audit log entries to {output}", err=True)


@cli.command("backup")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(out: Path) -> None:
    """Back the SQLite database up to the new file OUT while Pulse keeps running (for PostgreSQL:
    prints the pg_dump command)."""
    from core.backup import BackupError, backup_sqlite, postgres_commands, sqlite_path

    url = load_settings().resolved_database_url
    try:
        if sqlite_path(url) is None:
            click.echo(postgres_commands(url, out)[0])
            return
        pages = backup_sqlite(url, out)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backed up {pages} pages to {out}", err=True)


@cli.command("restore")
@click.argument("backup", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
def restore_command(backup: Path, force: bool) -> None:
    """Restore the SQLite database from the file BACKUP and migrate it; stop the worker and the
    dashboard first (for PostgreSQL: prints the pg_restore command)."""
    from core.backup import BackupError, postgres_commands, restore_sqlite, sqlite_path

    url = load_settings().resolved_database_url
    try:
        if sqlite_path(url) is None:
            click.echo(postgres_commands(url, backup)[1])
            return
        pages = restore_sqlite(backup, url, force=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored {pages} pages from {backup}", err=True)


if __name__ == "__main__":
    cli()
