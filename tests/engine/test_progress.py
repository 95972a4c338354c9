"""``texbridge texture``'s progress: a bar on a terminal, a few plain lines elsewhere (issue 11)."""

from __future__ import annotations

import io

from engine.runner import ProgressEvent
from engine.commands.texture import progress_callbacks


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def event(step: int, total: int) -> ProgressEvent:
    return ProgressEvent(step, total, 1, 500, 0.25, 1.0, 10.0, (total - step) / 10.0)


def test_not_a_terminal_prints_at_most_one_line_per_interval():
    stream, clock = io.StringIO(), FakeClock()
    callbacks, close = progress_callbacks(1000, quiet=False, stream=stream, interval_s=5.0, clock=clock)
    for step in range(1, 1001):  # 1000 steps at 0.1 s each: 100 s
        clock.t = step * 0.1
        callbacks.on_progress(event(step, 1000))
    close()
    lines = stream.getvalue().splitlines()
    assert 18 <= len(lines) <= 22, len(lines)  # one per 5 s of 100 s, plus the last step
    assert lines[0].startswith("texture: step 1/1000") and lines[-1].startswith("texture: step 1000/1000")
    assert "\r" not in stream.getvalue()  # no bar redraws in a log


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_bar():
    stream = Tty()
    callbacks, close = progress_callbacks(20, quiet=False, stream=stream)
    for step in range(1, 21):
        callbacks.on_progress(event(step, 20))
    close()
    out = stream.getvalue()
    assert "\r" in out and "20/20" in out and "step" in out


def test_quiet_prints_nothing():
    stream = io.StringIO()
    callbacks, _ = progress_callbacks(5, quiet=True, stream=stream)
    assert callbacks.on_progress is None and stream.getvalue() == ""


def test_a_job_without_steps_takes_the_total_from_its_events():
    """No steps in the spec: the recipe's (e.g. the embedded 500) arrive with the first event."""
    stream, tty = io.StringIO(), Tty()
    for s in (stream, tty):
        callbacks, close = progress_callbacks(None, quiet=False, stream=s, interval_s=5.0, clock=FakeClock())
        for step in (1, 2, 3):
            callbacks.on_progress(event(step, 3))
        close()
    assert stream.getvalue().splitlines()[-1].startswith("texture: step 3/3") and "eta" not in stream.getvalue().splitlines()[-1]
    assert "3/3" in tty.getvalue()
