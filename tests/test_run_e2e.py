"""Whole processes on a fresh database: `app.py run`, and gunicorn beside `app.py worker`."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from conftest import free_port

from core.models import SOURCE_KINDS
from core.settings import PROJECT_ROOT

STARTUP_LIMIT_S = 60
E2E_USER, E2E_PASSWORD = "eve", "e2e-password-123"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def post_json(opener: urllib.request.OpenerDirector, url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with opener.open(request, timeout=10) as response:
        return json.load(response)


def add_viewer(env: dict[str, str]) -> None:
    """A dashboard user in the test's database, added with the CLI as a district would."""
    command = [sys.executable, "app.py", "users", "add", E2E_USER, "--role", "viewer",
               "--password", E2E_PASSWORD]  # fmt: skip
    subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=True, capture_output=True, timeout=60)


def signed_in(base: str) -> urllib.request.OpenerDirector:
    """A cookie-keeping client signed in through the login form (with its CSRF token)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    with opener.open(f"{base}/login", timeout=5) as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())[1]
    form = {"csrf_token": token, "username": E2E_USER, "password": E2E_PASSWORD}
    with opener.open(f"{base}/login", urlencode(form).encode(), timeout=10) as reply:
        assert reply.url == f"{base}/"  # redirected to the overview, not back to the form
    return opener


def bar_total(values: list | dict) -> int:
    """Sum of a trace's values; Plotly sends numeric arrays as base64 typed arrays."""
    if isinstance(values, dict):
        return int(np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).sum())
    return sum(values)


def wait_for(condition, limit: float, *processes: subprocess.Popen):
    """The first truthy value of ``condition()`` within ``limit`` seconds; processes must live."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args} exited early"
        try:
            value = condition()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not reached within {limit} s")


def demo_env(tmp_path: Path) -> dict[str, str]:
    """A fresh SQLite database and a demo source fast enough to see arrivals every second."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PULSE_")},
        "PULSE_DATABASE_URL": f"sqlite:///{tmp_path / 'pulse.db'}",
        "PULSE_AUTHOR_HASH_KEY": "e2e",
        "PULSE_SECRET_KEY": "e2e-session",
        "PULSE_DEMO_BACKFILL_DAYS": "0",
        "PULSE_DEMO_INTERVAL_SECONDS": "1",
        "PULSE_DEMO_MESSAGES_PER_DAY": "200000",  # new messages every second, day and night
    }


@contextmanager
def started(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A process running ``command`` in the project folder, stopped with SIGTERM afterwards."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            finally:
                process.kill()
                process.wait()


def arrivals(base: str, *processes: subprocess.Popen) -> tuple[dict, dict]:
    """Two health readings from ``base``, the second showing more messages than the first."""
    first = wait_for(lambda: (h := get_json(f"{base}/health"))["messages"] > 0 and h,
                     STARTUP_LIMIT_S, *processes)  # fmt: skip
    later = wait_for(
        lambda: (h := get_json(f"{base}/health"))["messages"] > first["messages"] and h,
        30,
        *processes,
    )
    assert later["data_version"] != first["data_version"]
    return first, later


def test_run_brings_up_the_dashboard_with_demo_messages_arriving(tmp_path: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "app.py", "run", "--port", str(port)]
    env = demo_env(tmp_path)
    add_viewer(env)
    with started(command, env, tmp_path / "run.log") as process:
        _first, later = arrivals(base, process)
        with urllib.request.urlopen(f"{base}/", timeout=5) as page:
            assert page.url == f"{base}/login?next=/"  # signed out: the sign-in form
        opener = signed_in(base)
        with opener.open(f"{base}/", timeout=5) as page:
            assert page.status == 200 and page.url == f"{base}/" and b"Pulse" in page.read()
        tiles = [
            "kpi-today",
            "kpi-today-usual",
            "kpi-alerts",
            "kpi-alerts-note",
            "kpi-urgent",
            "kpi-urgent-note",
            "kpi-negative",
            "kpi-negative-note",
        ]
        outputs = [{"id": i, "property": "children"} for i in tiles] + [
            {"id": "overview-heatmap", "property": "figure"},
            {"id": "overview-trending", "property": "children"},
            {"id": "overview-channels", "property": "figure"},
            {"id": "volume-graph", "property": "figure"},
            {"id": "overview-cloud-topic", "property": "options"},
        ]
        filters = {
            "overview-window": "30d",
            "overview-kind": "",
            "overview-school": "",
            "overview-language": "",
        }
        spec = "...".join(f"{o['id']}.{o['property']}" for o in outputs)
        update = post_json(
            opener,
            f"{base}/_dash-update-component",
            {
                "output": f"..{spec}..",
                "outputs": outputs,
                "inputs": [{"id": "overview-version", "property": "data",
                            "value": later["data_version"]}]
                + [{"id": i, "property": "value", "value": v} for i, v in filters.items()],
                "changedPropIds": ["overview-version.data"],
            },
        )  # fmt: skip
        response = update["response"]
        assert int(response["kpi-today"]["children"].replace(",", "")) >= 0
        bars = response["volume-graph"]["figure"]["data"]
        assert {bar["name"] for bar in bars} <= set(SOURCE_KINDS) and bars
        assert sum(bar_total(bar["y"]) for bar in bars) >= later["messages"]  # all in the chart
    assert process.returncode == 0  # SIGTERM is a clean stop
    log = (tmp_path / "run.log").read_text()
    assert "Pulse dashboard: http://127.0.0.1:" in log
    assert "Pulse worker: 1 source(s) and the topic jobs scheduled" in log  # its own process


def test_production_layout_gunicorn_web_and_one_worker(tmp_path: Path):
    env = {**demo_env(tmp_path), "PULSE_DEMO_ENABLED": "true"}
    port = free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind",
                f"127.0.0.1:{port}", "dashboard.wsgi:server"]  # fmt: skip
    worker = [sys.executable, "app.py", "worker"]
    with (
        started(worker, env, tmp_path / "worker.log") as worker_process,
        started(gunicorn, env, tmp_path / "web.log") as web_process,
    ):
        arrivals(f"http://127.0.0.1:{port}", worker_process, web_process)
    assert worker_process.returncode == 0
    assert "1 source(s) and the topic jobs scheduled" in (tmp_path / "worker.log").read_text()
