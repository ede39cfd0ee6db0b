"""Megatron-style progress lines and TensorBoard scalars.

One line every ``--log-interval`` iterations, averaged over the interval::

    [2026-11-21 21:30:00] iteration       20/     100 | stage: prealign | consumed samples:  640 |
    elapsed time per iteration (ms): 812.3 | tokens per second: 40321.1 | learning rate: 3.000000E-04 |
    global batch size:    32 | lm loss: 6.912345E+00 | align loss: 4.123456E+00 |
    align loss L0: ... | grad norm: 1.234 | aligned cosine: 0.4123 | ETA: 0:01:05 |

``tokens per second`` counts LM training tokens (global batch x sequence length per iteration
with an LM loss); alignment-only iterations add their time but no tokens. The last rank (which
holds the LM head, as in Megatron-LM's ``print_rank_last``) prints and writes TensorBoard events.

TensorBoard series carry Megatron-LM's names, each also ``... vs samples`` (x = consumed
samples): the losses, ``learning-rate``, ``batch-size``, ``loss-scale``, ``world-size`` (when
asked), ``grad-norm``; validation ``lm loss validation`` (and ``... ppl``). With a W&B project
and ``wandb`` importable the same scalars go to W&B (otherwise a one-line notice).
"""

from __future__ import annotations

import datetime
import math
from collections import defaultdict
from typing import Any, Callable, Dict, Optional

import torch

__all__ = ["IntervalLogger", "is_last_rank", "format_eta", "open_wandb"]


def is_last_rank() -> bool:
    """Whether this is the last global rank (the one that prints)."""
    if not torch.distributed.is_initialized():
        return True
    return torch.distributed.get_rank() == torch.distributed.get_world_size() - 1


def open_wandb(project: Optional[str], name: Optional[str], save_dir: Optional[str], config: Dict[str, Any],
               printer: Callable[[str], None]) -> Any:
    """A W&B run on the last rank, or ``None`` (no project, another rank, or no ``wandb``: notice)."""
    if not project or not is_last_rank():
        return None
    try:
        import wandb
    except ImportError:
        printer(f"notice: --wandb-project {project}: the wandb package is not importable; not logging to W&B")
        return None
    if save_dir:
        import os

        os.makedirs(save_dir, exist_ok=True)
    return wandb.init(project=project, name=name, dir=save_dir, config=config)


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (``?`` while unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    return str(datetime.timedelta(seconds=int(round(seconds))))


class IntervalLogger:
    """Accumulates per-iteration metrics and emits a line (and TensorBoard scalars) per interval.

    Args:
        train_iters: total iterations (for the ETA).
        log_interval: iterations per line.
        tensorboard_dir: where events go (``None``: no TensorBoard).
        printer: called with each line (default ``print(..., flush=True)``).
    """

    def __init__(self, train_iters: int, log_interval: int, tensorboard_dir: Optional[str] = None,
                 printer=None, wandb_run: Any = None, log_loss_scale: bool = True, log_world_size: bool = False,
                 log_learning_rate: bool = True) -> None:
        self.train_iters = train_iters
        self.log_interval = log_interval
        self.printer = printer or (lambda s: print(s, flush=True))
        self.wandb = wandb_run
        self.log_loss_scale = log_loss_scale
        self.log_world_size = log_world_size
        self.log_learning_rate = log_learning_rate
        self.writer = None
        if tensorboard_dir and is_last_rank():
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=tensorboard_dir, max_queue=1000)
        self._sums: Dict[str, float] = defaultdict(float)
        self._counts: Dict[str, int] = defaultdict(int)
        self._iters = 0
        self._tokens = 0
        self._elapsed = 0.0
        self._skipped = 0
        self._nan = 0

    def add_iteration(self, elapsed_s: float, tokens: int, losses: Dict[str, float],
                      skipped: bool = False) -> None:
        """Record one iteration's wall time, processed tokens and (reduced) loss values."""
        self._iters += 1
        self._elapsed += elapsed_s
        self._tokens += tokens
        self._skipped += int(skipped)
        for key, value in losses.items():
            if not math.isfinite(value):
                self._nan += 1
            self._sums[key] += value
            self._counts[key] += 1

    def scalar(self, tag: str, value: float, iteration: int, consumed_samples: Optional[int] = None) -> None:
        """Write one TensorBoard scalar (last rank only), and ``tag vs samples`` when given."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, iteration)
            if consumed_samples is not None:
                self.writer.add_scalar(f"{tag} vs samples", value, consumed_samples)
        if self.wandb is not None:
            self.wandb.log({tag: value}, step=iteration)

    def emit(self, iteration: int, consumed_samples: int, stage: str, lr: float, global_batch_size: int,
             grad_norm: Optional[float], extra: Optional[Dict[str, float]] = None,
             loss_scale: Optional[float] = None, world_size: Optional[int] = None) -> Optional[str]:
        """Print the interval's line and write its scalars; reset the interval.

        ``loss_scale`` (fp16/bf16 optimizers) is printed and written as ``loss-scale``;
        ``world_size`` is written as ``world-size`` when the logger was asked to.
        """
        if self._iters == 0:
            return None
        ms = 1000.0 * self._elapsed / self._iters
        tps = self._tokens / self._elapsed if self._elapsed > 0 else float("nan")
        eta = (self.train_iters - iteration) * self._elapsed / self._iters
        means = {k: self._sums[k] / self._counts[k] for k in self._sums}
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        parts = [
            f"[{now}] iteration {iteration:8d}/{self.train_iters:8d}",
            f"stage: {stage}",
            f"consumed samples: {consumed_samples:12d}",
            f"elapsed time per iteration (ms): {ms:.1f}",
            f"tokens per second: {tps:.1f}",
            f"learning rate: {lr:.6E}",
            f"global batch size: {global_batch_size:5d}",
        ]
        parts += [f"{key}: {means[key]:.6E}" for key in sorted(means)]
        if loss_scale is not None:
            parts.append(f"loss scale: {loss_scale:.1f}")
        if grad_norm is not None:
            parts.append(f"grad norm: {grad_norm:.3f}")
        parts += [f"{key}: {value:.4f}" for key, value in (extra or {}).items()]
        parts.append(f"number of skipped iterations: {self._skipped:3d}")
        parts.append(f"number of nan iterations: {self._nan:3d}")
        parts.append(f"ETA: {format_eta(eta)}")
        line = " | ".join(parts) + " |"
        if is_last_rank():
            self.printer(line)
        series: Dict[str, float] = dict(means)  # Megatron-LM's names; each also "vs samples"
        if self.log_learning_rate:
            series["learning-rate"] = lr
        series["batch-size"] = global_batch_size
        if loss_scale is not None and self.log_loss_scale:
            series["loss-scale"] = loss_scale
        if world_size is not None and self.log_world_size:
            series["world-size"] = world_size
        if grad_norm is not None:
            series["grad-norm"] = grad_norm
        series.update(extra or {})
        if self.writer is not None:
            w = self.writer
            for key, value in series.items():
                w.add_scalar(key, value, iteration)
                w.add_scalar(f"{key} vs samples", value, consumed_samples)
            w.add_scalar("tokens-per-second", tps, iteration)
            w.add_scalar("iteration-time", ms / 1000.0, iteration)  # seconds, as Megatron-LM
            w.add_scalar("consumed-samples", consumed_samples, iteration)
            w.flush()
        if self.wandb is not None:
            self.wandb.log({**series, "samples vs steps": consumed_samples, "tokens-per-second": tps}, step=iteration)
        self._sums.clear()
        self._counts.clear()
        self._iters = self._tokens = self._skipped = self._nan = 0
        self._elapsed = 0.0
        return line

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
