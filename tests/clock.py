"""The tests' clock: one pinned date, the only "today" the suite knows.

The demo data is seeded for TEST_DATE, and the whole test process (with every
server thread it starts) runs with the wall clock at TEST_DATE 12:00 UTC, moving
forward from there as real time passes (time-machine patches datetime.now,
time.time and their kin; time.monotonic, which the event loop runs on, is left
alone). So the suite gives the same result on any day the machine is run.

    REVAMPD_TEST_DATE=2028-02-29 make test     # the suite at another date

A test that needs "now" to move passes the time to the service (or `--now` to
a command), from NOW rather than from the wall clock. A command the tests run
as a process of its own is started through `python -m tests.clock <module> ...`
(`command`), whose clock reads what the suite's does.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from datetime import UTC, date, datetime, timedelta

import time_machine

# The default pinned date: a Wednesday in the middle of a 31-day month. CI runs the
# SQLite suite once more at a second date far from it (.ci/run).
DEFAULT_DATE = date(2026, 5, 20)
TEST_DATE = date.fromisoformat(os.environ.get("REVAMPD_TEST_DATE") or DEFAULT_DATE.isoformat())
# What the suite's clock reads when it starts: midday of the pinned date.
NOW = datetime(TEST_DATE.year, TEST_DATE.month, TEST_DATE.day, 12, tzinfo=UTC)


# For the processes the tests start: the instant the suite's clock was pinned at and
# time.monotonic() then. The monotonic clock is the machine's, the same in every process, and
# time-machine leaves it alone, so a process finds the suite's "now" without the real date.
_PINNED = "REVAMPD_TEST_CLOCK"


def pin(at: datetime = NOW) -> time_machine.travel:
    """Starts this process's wall clock at `at`, ticking on, and has the processes it
    starts through `command` read the same clock; returns the travel to stop."""
    os.environ[_PINNED] = f"{at.isoformat()} {time.monotonic()}"
    travel = time_machine.travel(at, tick=True)
    travel.start()
    # time-machine ticks from the first reading, not from start(): read it now, so that a
    # process that imports for a while before it first reads the clock does not lag behind.
    time.time()
    return travel


def command(module: str, *args: str) -> list[str]:
    """argv of `python -m module args` in a process whose wall clock reads what this one's does
    (and so do the worker processes it spawns)."""
    return [sys.executable, "-m", "tests.clock", module, *args]


if __name__ in ("__main__", "__mp_main__") and _PINNED in os.environ:
    # Started by `command` (or spawned by such a process, as uvicorn's workers are, which
    # import it as __mp_main__): the clock is pinned before anything else runs, at the
    # suite's instant plus the time that has passed since.
    _at, _then = os.environ[_PINNED].split()
    pin(datetime.fromisoformat(_at) + timedelta(seconds=time.monotonic() - float(_then)))

if __name__ == "__main__":
    module, *rest = sys.argv[1:]
    sys.argv = [module, *rest]
    # Not alter_sys: __main__ stays this module, so that a process spawned from it pins its clock too.
    runpy.run_module(module, run_name="__main__")
