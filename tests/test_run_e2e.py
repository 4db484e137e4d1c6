"""Whole processes on a fresh database: `app.py run`, and gunicorn beside `app.py worker`."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from conftest import free_port

from core.models import SOURCE_KINDS
from core.settings import PROJECT_ROOT

STARTUP_LIMIT_S = 60


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def post_json(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


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
    with started(command, demo_env(tmp_path), tmp_path / "run.log") as process:
        _first, later = arrivals(base, process)
        with urllib.request.urlopen(f"{base}/", timeout=5) as page:
            assert page.status == 200 and b"Pulse" in page.read()
        outputs = ["kpi-last-hour", "kpi-last-24h", "kpi-total", "kpi-latest"]
        update = post_json(
            f"{base}/_dash-update-component",
            {
                "output": "..kpi-last-hour.children...kpi-last-24h.children...kpi-total.children"
                "...kpi-latest.children...volume-graph.figure...overview-version.data..",
                "outputs": [{"id": i, "property": "children"} for i in outputs]
                + [{"id": "volume-graph", "property": "figure"},
                   {"id": "overview-version", "property": "data"}],
                "inputs": [{"id": "overview-tick", "property": "n_intervals", "value": 1}],
                "changedPropIds": ["overview-tick.n_intervals"],
                "state": [{"id": "overview-version", "property": "data", "value": None}],
            },
        )  # fmt: skip
        total = int(update["response"]["kpi-total"]["children"].replace(",", ""))
        assert total >= later["messages"]
        bars = update["response"]["volume-graph"]["figure"]["data"]
        assert {bar["name"] for bar in bars} <= set(SOURCE_KINDS) and bars
        assert sum(bar_total(bar["y"]) for bar in bars) == total  # every message is in the chart
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
