"""A lean HTTP/1.1 load generator for tests/bench/dashboard.py, run as its own process.

Reads one JSON command per line on stdin: {"port", "request" (the raw request, latin-1),
"connections", "seconds"}; answers one JSON line on stdout: {"requests" (answered),
"ok" (answered 200), "elapsed", "latencies_us", "errors" (a few), "error_count"}. Each connection is kept alive and sends the request again as
soon as the whole response (by Content-Length) is in. When the time is up each
connection finishes the request it has in flight: every request the server worked on
is counted, so the server's CPU time over the run divided by `requests` is its CPU per
request. Standard library (and uvloop when installed) only: it must cost the servers
on a small machine as little CPU as possible.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def _client(port: int, request: bytes, deadline: float, latencies: list[int], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter_ns
    try:
        while time.perf_counter() < deadline:
            started = clock()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append((clock() - started) // 1000)
            if head[9:12] != b"200":
                errors.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
    finally:
        writer.close()


async def run(port: int, request: bytes, connections: int, seconds: float) -> dict[str, object]:
    latencies: list[int] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    results = await asyncio.gather(
        *(_client(port, request, deadline, latencies, errors) for _ in range(connections)), return_exceptions=True
    )
    elapsed = time.perf_counter() - started
    failed = len(errors)
    errors += [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return {"requests": len(latencies), "ok": len(latencies) - failed, "elapsed": elapsed,
            "latencies_us": latencies, "errors": errors[:5], "error_count": len(errors)}


def main() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    for line in sys.stdin:
        cmd = json.loads(line)
        result = asyncio.run(run(cmd["port"], cmd["request"].encode("latin-1"), cmd["connections"], cmd["seconds"]))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
