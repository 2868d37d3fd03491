"""A client that hangs up, at any point, through a real uvicorn served as `revampd-bff serve` serves.

uvicorn runs in a thread on its own event loop with serve's options (uvloop, httptools); the
client is a raw socket that hangs up at one point of the exchange. Each such request must log one
INFO line (status 499, client disconnected), nothing at WARNING or above, no traceback, and the
server must answer the next request normally.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import pytest

from server.webhooks import SIGNATURE_HEADER, sign
from tests import served as _served
from tests.conftest import Databases, make_api
from tests.served import DEADLINE

OWNER = "owner@northwind.example"
QUERY = json.dumps({"query": "{ viewer { partner { name } } plans { code name } }"}).encode()
# Large enough that the client's receive buffer fills before the response is all sent.
INTROSPECTION = json.dumps({"query": "{ __schema { types { name description fields { name description "
                                     "args { name description } type { name kind ofType { name kind } } } } } }"}).encode()


@dataclass
class Served:
    port: int
    token: str
    webhook_secret: str

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        return sock

    def request(self, request_id: str, body: bytes | None = QUERY, *, method: str = "POST", path: str = "/graphql",
                length: int | None = None, headers: dict[str, str] | None = None, token: bool = True) -> bytes:
        """The raw request: head, and `body` (which may be shorter than the Content-Length sent)."""
        lines = [f"{method} {path} HTTP/1.1", "Host: test", f"X-Request-ID: {request_id}"]
        if token:
            lines.append(f"Authorization: Bearer {self.token}")
        if method == "POST":
            lines.append("Content-Type: application/json")
        if body is not None:
            lines.append(f"Content-Length: {len(body) if length is None else length}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")

    def webhook(self, request_id: str) -> bytes:
        """A genuine, signed webhook (its handling writes to the database)."""
        now = int(time.time())
        body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "bank_transfer.paid", "created": now,
                           "data": {"object": {"id": "sbt_unknown"}}}).encode()
        return self.request(request_id, body, path="/webhooks/bank-transfers", token=False,
                            headers={SIGNATURE_HEADER: sign(self.webhook_secret, now, body)})


@pytest.fixture
async def served(databases: Databases) -> AsyncIterator[Served]:
    api = await make_api(await databases.clone())
    await api.http.aclose()
    with _served.served(api.app) as port:
        yield Served(port, api.tokens[OWNER], api.settings.bank_webhook_secret)


def _hang_up(sock: socket.socket, *, reset: bool = False) -> None:
    """Close the socket: a FIN, or with reset=True a RST (SO_LINGER 0)."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _request_line(caplog: pytest.LogCaptureFixture, request_id: str) -> logging.LogRecord | None:
    for record in list(caplog.records):
        if record.name == "revampd.request" and f"request_id={request_id} " in record.getMessage():
            return record
    return None


def _logged(caplog: pytest.LogCaptureFixture, request_id: str) -> None:
    """Wait until the request `request_id` has its log line."""
    _served.until(lambda: _request_line(caplog, request_id), f"the log line of {request_id}")


def _still_answers(served: Served) -> tuple[str, str]:
    """A normal request on a new connection answers 200; its request id and client address."""
    request_id = f"after-{uuid.uuid4().hex[:8]}"
    with served.connect() as sock:
        client = "%s:%d" % sock.getsockname()
        sock.sendall(served.request(request_id))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection: {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    return request_id, client


def _assert_one_quiet_line(caplog: pytest.LogCaptureFixture, served: Served, request_id: str) -> None:
    """The request `request_id` logged exactly one INFO line, status 499; nothing logged a fault."""
    _logged(caplog, request_id)
    # Everything the server does for that request happens before it answers the next one.
    after, client = _still_answers(served)
    _logged(caplog, after)
    records = list(caplog.records)
    faults = [r for r in records if r.levelno >= logging.WARNING or r.exc_info]
    assert not faults, [f"{r.levelname} {r.name} {r.getMessage()}" for r in faults]
    mine = [r for r in records if r.name.startswith(("revampd", "uvicorn"))
            and f"request_id={after} " not in r.getMessage() and client not in r.getMessage()
            and not _outcome(r)]
    assert len(mine) == 1, [f"{r.levelname} {r.name} {r.getMessage()}" for r in mine]
    [line] = mine
    message = line.getMessage()
    assert line.levelno == logging.INFO and line.name == "revampd.request", message
    assert f"request_id={request_id} " in message and "status=499" in message, message
    assert "client disconnected" in message, message


def _outcome(record: logging.LogRecord) -> bool:
    """A webhook received whole is handled before its answer is sent: the line saying what it did."""
    return record.name == "revampd.webhooks" and " bank_transfer.paid for sbt_unknown: " in record.getMessage()


def _start_capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()


# Each: what the client sends before it hangs up, given the server and the request id.
HANG_UPS: dict[str, Callable[[Served, str], bytes]] = {
    "graphql-head-only": lambda s, rid: s.request(rid, b"", length=len(QUERY)),
    "graphql-part-of-body": lambda s, rid: s.request(rid, QUERY[:10], length=len(QUERY)),
    "graphql-chunked-part-of-body": lambda s, rid: s.request(rid, None, headers={"Transfer-Encoding": "chunked"})
    + b"5\r\n" + QUERY[:5] + b"\r\n",
    "graphql-expect-100-continue": lambda s, rid: s.request(rid, b"", length=len(QUERY),
                                                            headers={"Expect": "100-continue"}),
    "graphql-large-body-part": lambda s, rid: s.request(rid, b'{"query": "' + b" " * 300_000, length=900_000),
    "graphql-whole-request": lambda s, rid: s.request(rid),
    "graphql-get-whole-request": lambda s, rid: s.request(
        rid, None, method="GET", path="/graphql?query=%7B%20plans%20%7B%20code%20%7D%20%7D"),
    "webhook-head-only": lambda s, rid: s.webhook(rid).partition(b"\r\n\r\n")[0] + b"\r\n\r\n",
    "webhook-part-of-body": lambda s, rid: s.webhook(rid)[:-10],
    "webhook-whole-request": lambda s, rid: s.webhook(rid),
    # Pipelined: the first request is answered while the client has already gone.
    "graphql-pipelined": lambda s, rid: s.request(rid) + s.request(rid + "-next"),
    "graphql-pipelined-then-head": lambda s, rid: s.request(rid) + s.request(rid + "-next", b"", length=100),
    "webhook-pipelined": lambda s, rid: s.webhook(rid) + s.webhook(rid + "-next"),
}


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("variant", list(HANG_UPS))
async def test_a_client_that_hangs_up_is_one_quiet_line(
    served: Served, caplog: pytest.LogCaptureFixture, variant: str, reset: bool
) -> None:
    _start_capture(caplog)
    request_id = f"gone-{uuid.uuid4().hex[:8]}"
    sock = served.connect()
    sock.sendall(HANG_UPS[variant](served, request_id))
    _hang_up(sock, reset=reset)
    _assert_one_quiet_line(caplog, served, request_id)


async def test_a_client_that_hangs_up_while_a_large_response_is_sent_logs_no_fault(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    _start_capture(caplog)
    for reset in (False, True):
        request_id = f"big-{uuid.uuid4().hex[:8]}"
        sock = served.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(served.request(request_id, INTROSPECTION))
        assert sock.recv(16).startswith(b"HTTP/1.1 200")  # the response has begun
        _hang_up(sock, reset=reset)
        _logged(caplog, request_id)
        after, _ = _still_answers(served)
        _logged(caplog, after)
    faults = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not faults, [f"{r.levelname} {r.name} {r.getMessage()}" for r in faults]
