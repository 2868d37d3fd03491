"""Long jobs (billing run, payouts close-period) show how they get on: on a terminal a bar with
the rate and the time left, redrawn in place; elsewhere one log line a minute."""

from __future__ import annotations

import logging

import pytest

from server.cli import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_the_bar_shows_done_of_total_the_rate_and_the_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    bar = Progress("billing", terminal=True, clock=clock)
    bar(0, 1000)
    clock.now += 10
    bar(350, 1000)
    bar.close()
    out = capsys.readouterr().out
    assert out.startswith("\rbilling [") and out.endswith("\n")
    assert "\rbilling [##########....................] 350/1000  35.0/s  0:18 left" in out


def test_elsewhere_it_logs_a_line_a_minute(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    bar = Progress("payouts", terminal=False, clock=clock)
    caplog.set_level(logging.INFO, "revampd.progress")
    for seconds, done in ((30, 100), (61, 200), (90, 300), (125, 400)):
        clock.now = 1000.0 + seconds
        bar(done, 1000)
    bar.close()
    assert capsys.readouterr().out == ""
    assert [r.getMessage() for r in caplog.records] == [
        "payouts: 200 of 1000 done, 3.3/s, 4:04 left", "payouts: 400 of 1000 done, 3.2/s, 3:07 left"]
