"""Every command and group answers --help."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from app import cli

EXPECTED = {"run", "serve", "worker", "migrate", "import", "export", "users"}


def walk(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += walk(command, (*path, name))
        else:
            found.append((*path, name))
    return found


def test_the_commands_of_the_design_exist():
    assert set(cli.commands) >= EXPECTED
    assert {"add", "list"} <= set(cli.commands["users"].commands)
    assert "messages" in cli.commands["export"].commands


@pytest.mark.parametrize("path", walk(cli), ids=lambda p: " ".join(p) or "pulse")
def test_help(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


@pytest.fixture
def pulse_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PULSE_DATABASE_URL", f"sqlite:///{tmp_path / 'pulse.db'}")
    monkeypatch.setenv("PULSE_AUTHOR_HASH_KEY", "k")
    monkeypatch.setenv("PULSE_SOURCES_FILE", str(tmp_path / "sources.toml"))
    monkeypatch.setenv("PULSE_DEMO_BACKFILL_DAYS", "1")
    monkeypatch.setenv("PULSE_SYNC_BACKOFF_SECONDS", "0.01")
    return tmp_path


def test_sources_commands_check_the_file_sync_once_and_show_health(pulse_env, monkeypatch):
    runner = CliRunner()
    listed = runner.invoke(cli, ["sources", "list"])
    assert listed.exit_code == 0 and "no sources configured" in listed.output
    (pulse_env / "sources.toml").write_text(
        '[[source]]\nname = "feed"\ntype = "rss"\nurl = "http://127.0.0.1:9/feed.xml"\n'
        'interval_seconds = 900\n\n[[webhook]]\nname = "forms"\ntype = "signed_json"\n'
        'secret_env = "FORMS_SECRET"\n'
    )
    missing_secret = runner.invoke(cli, ["sources", "list"])
    assert missing_secret.exit_code == 1
    assert "secret_env = 'FORMS_SECRET': set that environment variable" in missing_secret.output
    monkeypatch.setenv("FORMS_SECRET", "x")
    listed = runner.invoke(cli, ["sources", "list"])
    assert listed.exit_code == 0, listed.output
    assert "feed\tsocial\tevery 900 s" in listed.output
    assert "forms\tsigned_json webhook\tPOST /webhooks/forms" in listed.output

    synced = runner.invoke(cli, ["sources", "sync", "demo"])
    assert synced.exit_code == 0, synced.output
    assert re.search(r"demo: (\d+) fetched, \1 new", synced.output)
    down = runner.invoke(cli, ["sources", "sync", "feed"])  # nothing listens on port 9
    assert down.exit_code == 1 and "feed: " in down.output
    unknown = runner.invoke(cli, ["sources", "sync", "nope"])
    assert "no source 'nope'; configured: demo, feed" in unknown.output

    status = runner.invoke(cli, ["sources", "status"]).output.splitlines()
    assert status[0].startswith("feed\tFailing\tlast success never") and "Error" in status[0]
    assert status[1].startswith("demo\tOK\tlast success ")


def test_topics_lists_and_renames(pulse_env):
    from core.db import create_db_engine, migrate, write_session
    from core.models import Topic

    engine = create_db_engine(f"sqlite:///{pulse_env / 'pulse.db'}")
    migrate(engine)
    runner = CliRunner()
    assert "no topics yet" in runner.invoke(cli, ["topics"]).output
    with write_session(engine) as session:
        session.add(
            Topic(
                id=1,
                label="bus · late · route",
                size=40,
                words=[["bus", 1.0], ["late", 0.8], ["route", 0.5]],
            )
        )
        session.add(Topic(id=2, label="old · thing", size=90, status="retired"))  # fmt: skip
    assert runner.invoke(cli, ["topics"]).output == "1\t40\tbus · late · route\tbus, late, route\n"
    renamed = runner.invoke(cli, ["topics", "rename", "1", "Buses running late"])
    assert renamed.exit_code == 0 and "topic 1: Buses running late" in renamed.output
    listed = runner.invoke(cli, ["topics", "--all"]).output.splitlines()
    assert listed == [
        "2\t90\told · thing [retired]\t",
        "1\t40\tBuses running late\tbus, late, route",
    ]
    missing = runner.invoke(cli, ["topics", "rename", "9", "x"])
    assert missing.exit_code == 1 and "no topic 9" in missing.output
    runner.invoke(cli, ["topics", "rename", "1"])
    assert "bus · late · route" in runner.invoke(cli, ["topics"]).output
