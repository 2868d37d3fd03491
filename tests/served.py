"""A real uvicorn server, run as `revampd-bff serve` runs it, for tests whose client is
another process (Node.js, Chromium) or a raw socket."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import uvicorn

from server.cli import UVICORN_OPTIONS

DEADLINE = 20.0


def until(condition: Callable[[], object], what: str, deadline: float = DEADLINE) -> None:
    """Poll an observable condition until it holds; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@contextmanager
def served(app: Any) -> Iterator[int]:
    """Serves `app` on 127.0.0.1 in a thread with its own event loop; yields the port."""
    # lifespan="on": the app disposes of its engine on shutdown, on the server's own loop.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on", **UVICORN_OPTIONS)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    until(lambda: server.started or not thread.is_alive(), "the server to start")
    assert server.started, "uvicorn did not start"
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(DEADLINE)
        assert not thread.is_alive(), "uvicorn did not stop"
