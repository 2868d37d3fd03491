"""`revampd-bff serve --workers 2` as an operator runs it: a real process on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from db import models as m
from db.engine import create_engine, read_sessions
from server.auth import user_token
from server.settings import Settings
from tests import clock
from tests.conftest import Databases

WHO = json.dumps({"query": "query Who { viewer { user { email } } }", "operationName": "Who"}).encode()
DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def until_up(url: str, process: subprocess.Popen[Any]) -> None:
    """Polls until the server answers (it takes a moment to start its workers)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if get(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not start")


async def owner_token(url: str) -> str:
    engine = create_engine(url)
    try:
        async with read_sessions(engine)() as session:
            user = await session.scalar(select(m.User).where(m.User.email == "owner@northwind.example"))
    finally:
        await engine.dispose()
    assert user is not None
    return user_token(Settings(), user)


def _parsed(line: str) -> dict[str, Any]:
    try:
        return dict(json.loads(line))
    except ValueError:
        return {"raw": line}


def requests_counted(base: str, log: list[dict[str, Any]]) -> float:
    status, body = get(f"{base}/metrics")
    assert status == 200, (body, [line for line in list(log) if line.get("level") not in ("INFO", "DEBUG")])
    return sum(
        s.value for family in text_string_to_metric_families(body.decode()) for s in family.samples
        if s.name == "revampd_http_requests_total" and s.labels["operation"] == "Who"
    )


async def test_serve_with_two_workers_answers_and_adds_up_their_metrics(databases: Databases) -> None:
    url = await databases.clone()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": url, "LOG_FORMAT": "json"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        clock.command("server.cli", "serve", "--workers", "2", "--port", str(port)),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: list[dict[str, Any]] = []
    stderr = server.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(_parsed(line) for line in stderr), daemon=True)
    reader.start()

    def served_by() -> set[int]:
        return {line["pid"] for line in list(lines) if line.get("logger") == "revampd.request" and line["path"] == "/graphql"}

    try:
        until_up(f"{base}/healthz", server)
        token = await owner_token(url)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # Each request on a connection of its own, until both workers have answered some.
        sent = 0
        while sent < 10 or (len(served_by()) < 2 and sent < 1000):
            status, body = get(f"{base}/graphql", WHO, headers)
            assert status == 200 and json.loads(body)["data"]["viewer"]["user"]["email"], body
            sent += 1
        assert len(served_by()) == 2, "one worker answered every request"
        # Either worker answers /metrics with the sum of both (each counts just after it answers).
        deadline = time.monotonic() + DEADLINE
        while requests_counted(base, lines) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert requests_counted(base, lines) == sent
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=DEADLINE)
        reader.join(timeout=DEADLINE)
    assert server.returncode == 0, lines[-5:]
    assert [line["raw"] for line in lines if "raw" in line] == []  # every line one JSON object
    requests = [line for line in lines if line["logger"] == "revampd.request" and line["path"] == "/graphql"]
    assert len(requests) == sent and not [line for line in lines if line["logger"] == "uvicorn.access"]
    assert sum(1 for line in lines if line["message"].startswith("Finished server process")) == 2
