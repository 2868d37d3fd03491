"""`python -m tests.golden capture` rewrites the goldens; `check` compares without writing.

Both build a fresh demo database (SQLite in a temporary directory, or an empty
PostgreSQL database created for the run with --database-url) seeded for FIXED_DATE.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from typing import Any

from sqlalchemy.engine import make_url

from tests import golden
from tests.pg import pg_admin


async def _run(database_url: str | None) -> dict[str, list[dict[str, Any]]]:
    if database_url is None:
        with tempfile.TemporaryDirectory() as tmp:
            return await golden.capture(golden.sqlite_url(tmp))
    name = f"revampd_golden_{uuid.uuid4().hex[:8]}"
    await pg_admin(database_url, f'CREATE DATABASE "{name}"')
    try:
        return await golden.capture(make_url(database_url).set(database=name).render_as_string(hide_password=False))
    finally:
        await pg_admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden", description=__doc__)
    parser.add_argument("command", choices=["capture", "check"])
    parser.add_argument("--database-url", help="a PostgreSQL server (postgresql+asyncpg://...) instead of SQLite")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = asyncio.run(_run(args.database_url))
    count = sum(len(c) for c in results.values())
    if args.command == "capture":
        for stale in golden.golden_names() - set(results):
            golden.golden_path(stale).unlink()
        for name, cases in results.items():
            golden.write_golden(name, cases)
        print(f"wrote {len(results)} goldens, {count} cases, in {time.monotonic() - started:.1f}s")
        return 0
    failed = False
    for name in sorted(set(results) | golden.golden_names()):
        if name not in results or name not in golden.golden_names():
            print(f"{name}: {'no golden' if name in results else 'no document'}")
            failed = True
            continue
        diff = golden.compare_cases(name, golden.load_golden(name), results[name])
        if diff:
            print(diff)
            failed = True
    print(f"{'DIFFERENT' if failed else 'same'}: {count} cases in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
