"""ExitConditions: a SIGTERM or the wall-clock limit asks the loop to stop (one process)."""

from __future__ import annotations

import os
import signal
import time

from megatron_prealign.training.preemption import ExitConditions


def test_sigterm_sets_the_flag_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with ExitConditions() as cond:
        assert cond.should_exit() is None
        os.kill(os.getpid(), signal.SIGTERM)  # the process must survive: the handler only records it
        time.sleep(0.05)
        assert cond.should_exit() == "signal"
    assert signal.getsignal(signal.SIGTERM) == before


def test_duration_limit():
    with ExitConditions(handle_signals=False, duration_mins=1, start_time=time.time() - 61) as cond:
        assert cond.should_exit() == "duration"
    with ExitConditions(handle_signals=False, duration_mins=1) as cond:
        assert cond.should_exit() is None


def test_disabled_handler_leaves_sigterm_alone():
    before = signal.getsignal(signal.SIGTERM)
    with ExitConditions(handle_signals=False):
        assert signal.getsignal(signal.SIGTERM) == before
