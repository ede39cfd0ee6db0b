"""Clean exits on preemption: SIGTERM and ``--exit-duration-in-mins``.

A SLURM time limit or preemption sends SIGTERM (``#SBATCH --signal=B:TERM@120`` in
``examples/slurm/launch.sbatch`` asks for it two minutes early). The handler only records the
signal; the training loop asks :meth:`ExitConditions.should_exit` after every iteration, which
all-reduces the flags over the world (MAX) so that every rank stops after the *same* iteration
— a rank that stopped alone would leave the others blocked in a collective — and the loop saves a
checkpoint and returns, so the process exits with status 0. Megatron-LM's
``DistributedSignalHandler`` agrees the same way (all-gather of the flag).
"""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Dict, Optional, Sequence

import torch

__all__ = ["ExitConditions"]


class ExitConditions:
    """Signal flag and wall-clock limit, agreed over all ranks.

    Use as a context manager around the training loop (restores the previous handlers).

    Args:
        handle_signals: install the handlers (``False``: signals keep their default action).
        duration_mins: exit once this many minutes have passed since ``start_time``.
        start_time: ``time.time()`` the duration counts from (default: now).
        signals: which signals request the exit (default SIGTERM).
    """

    def __init__(self, handle_signals: bool = True, duration_mins: Optional[float] = None,
                 start_time: Optional[float] = None, signals: Sequence[int] = (signal.SIGTERM,)) -> None:
        self.handle_signals = handle_signals
        self.duration_mins = duration_mins
        self.start_time = time.time() if start_time is None else start_time
        self.signals = tuple(signals)
        self.received: Optional[int] = None
        self._previous: Dict[int, object] = {}

    def _handler(self, signum: int, frame: Optional[FrameType]) -> None:
        self.received = signum  # act at the end of the iteration, on every rank at once

    def __enter__(self) -> "ExitConditions":
        if self.handle_signals:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)  # type: ignore[arg-type]
        self._previous.clear()

    def should_exit(self) -> Optional[str]:
        """Why every rank must stop now (``"signal"`` or ``"duration"``), or ``None``.

        A collective when ``torch.distributed`` is initialised: call on every rank.
        """
        local = [float(self.received is not None),
                 float(self.duration_mins is not None and (time.time() - self.start_time) / 60.0 > self.duration_mins)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from megatron_prealign.platform import device

            flags = torch.tensor(local, dtype=torch.float32, device=device())
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            local = flags.cpu().tolist()
        if local[0]:
            return "signal"
        if local[1]:
            return "duration"
        return None
