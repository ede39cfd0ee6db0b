"""LM batches: blended Megatron datasets and a resumable data-parallel sampler.

Datasets are built with Megatron-Core's ``BlendedMegatronDatasetBuilder`` (so ``--data-path``
blends and ``--split``, or ``--train-data-path``/``--valid-data-path``/``--test-data-path`` with
each split's own datasets used whole, mean what they mean in Megatron-LM). The dataset class is
``MaskedGPTDataset`` by default: a ``GPTDataset`` whose ``loss_mask`` also zeroes the targets the
input-only codeswitcher substituted. Passing Megatron's plain ``GPTDataset`` gives the baseline
(``bench/bench_training.py`` does).

The sampler is Megatron-LM's pretraining sampler: consecutive global batches, each split into
per-rank microbatches, starting at ``consumed_samples`` — which is what a checkpoint records, so
a resumed job reads exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset

from megatron_prealign.platform import device
from megatron_prealign.training.config import SPLIT_FLAGS, DataConfig

logger = logging.getLogger(__name__)

__all__ = [
    "PretrainingSampler",
    "build_lm_datasets",
    "build_lm_iterator",
    "default_dataset_class",
    "lm_sample_counts",
]


def default_dataset_class() -> Type[GPTDataset]:
    """``MaskedGPTDataset`` (text + stored codeswitch mask)."""
    from megatron_prealign.data import MaskedGPTDataset

    return MaskedGPTDataset


def lm_sample_counts(train_iters: int, global_batch_size: int, eval_interval: int, eval_iters: int
                     ) -> List[int]:
    """Samples each split must provide (Megatron-LM's formula for train and validation)."""
    evals = (train_iters // eval_interval + 1) * eval_iters if eval_interval and eval_iters else 0
    # No test pass in this loop: the test split is never read.
    return [train_iters * global_batch_size, evals * global_batch_size, 0]


def build_lm_datasets(
    cfg: DataConfig,
    tokenizer: Any,
    seed: int,
    num_samples: Sequence[int],
    dataset_cls: Optional[Type[GPTDataset]] = None,
) -> Tuple[Optional[GPTDataset], Optional[GPTDataset], Optional[GPTDataset]]:
    """Build blended train/valid/test datasets (each ``None`` when its split is not read).

    With ``cfg.blend`` every dataset is cut by ``cfg.split`` (``--data-path``); with
    ``cfg.blend_per_split`` each split blends its own datasets, every document of them
    (``--train-data-path`` etc., megatron-core's ``blend_per_split``).

    Args:
        cfg: data paths, split and sequence length.
        tokenizer: provides ``eod``, ``pad`` and ``vocab_size``.
        seed: shuffling seed (``--seed``).
        num_samples: samples needed per split, see :func:`lm_sample_counts`; a split with 0 is
            not built.
        dataset_cls: ``MaskedGPTDataset`` (default) or ``GPTDataset``.

    Raises:
        FileNotFoundError: a prefix without its ``.bin``/``.idx`` (one line naming the flag).
        ValueError: a split that is read but has no documents, or no data for it.
    """
    flags = SPLIT_FLAGS if cfg.per_split else ("--data-path",)
    blends = cfg.blend_per_split if cfg.per_split else [cfg.blend]
    for flag, blend in zip(flags, blends):
        for prefix in (blend[0] if blend is not None else []):
            for ext in (".bin", ".idx"):
                if not os.path.exists(prefix + ext):
                    raise FileNotFoundError(f"{flag}: {prefix}{ext} does not exist")
    if dataset_cls is None:
        dataset_cls = default_dataset_class()
    from megatron_prealign.data.masked_gpt_dataset import masked_gpt_dataset_config

    common = dict(
        seq_length=cfg.seq_length,
        seed=seed,
        data_cache_path=cfg.data_cache_path,
        eod_mask_loss=cfg.eod_mask_loss,
        create_attention_mask=True,
        mmap_bin_files=cfg.mmap_bin_files,
    )
    if cfg.per_split:
        _check_per_split(cfg, num_samples)
        # A split nobody reads is not built (its blend is dropped): nothing to index or cache.
        blends = [b if n else None for b, n in zip(cfg.blend_per_split, num_samples)]
        gpt_cfg = masked_gpt_dataset_config(tokenizer, blend_per_split=blends, **common)
    else:
        gpt_cfg = masked_gpt_dataset_config(tokenizer, blend=cfg.blend, split=cfg.split, **common)
        _check_splits(cfg, num_samples)
        # A split nobody reads is not built: megatron-core would loop forever on an empty one, and
        # changing --split instead would move the train/valid boundary (and the training data).
        gpt_cfg.split_matrix = [b if n else None for b, n in zip(gpt_cfg.split_matrix, num_samples)]
    # Every rank builds (memory-mapped, cheap) and reads its own microbatches; no TP broadcast.
    counts = [int(n) for n in num_samples]
    return tuple(BlendedMegatronDatasetBuilder(dataset_cls, counts, lambda: True, gpt_cfg).build())


def _check_splits(cfg: DataConfig, num_samples: Sequence[int]) -> None:
    """Fail clearly on a requested split without documents (megatron-core would loop forever)."""
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )
    from megatron_prealign.data.indexed import check_indexed_dataset

    matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(cfg.split))
    names = ("train", "validation", "test")
    for prefix in cfg.blend[0]:
        # Validates the .idx/.bin first: a corrupt file is a one-line error naming it.
        num_docs = check_indexed_dataset(prefix).document_count - 1
        for i, bounds in enumerate(matrix):
            if not num_samples[i]:
                continue
            if bounds is None or int(round(bounds[1] * num_docs)) - int(round(bounds[0] * num_docs)) < 1:
                hint = "--eval-iters 0 or " if i else ""
                raise ValueError(f"--split {cfg.split}: the {names[i]} split of {prefix} ({num_docs} documents) "
                                 f"is empty; use {hint}another --split (or --train-data-path/--valid-data-path)")


def _check_per_split(cfg: DataConfig, num_samples: Sequence[int]) -> None:
    """Fail clearly when a split that is read has no data (megatron-core would loop forever)."""
    from megatron_prealign.data.indexed import check_indexed_dataset

    names = ("training", "validation", "test")
    hints = ("", " or --eval-iters 0", "")
    for i, (flag, blend) in enumerate(zip(SPLIT_FLAGS, cfg.blend_per_split)):
        if not num_samples[i]:
            continue
        if blend is None:
            raise ValueError(f"{flag}: the {names[i]} split is read ({num_samples[i]} samples) but has no "
                             f"data; give {flag}{hints[i]}")
        for prefix in blend[0]:
            # Validates the .idx/.bin first: a corrupt file is a one-line error naming it.
            if check_indexed_dataset(prefix).document_count - 1 < 1:
                raise ValueError(f"{flag}: {prefix} has no documents")


class PretrainingSampler:
    """Megatron-LM's pretraining sampler: this DP rank's microbatch indices, in order.

    Global batch ``g`` holds samples ``[g * B, (g + 1) * B)`` with ``B = micro x dp`` per
    microbatch round; DP rank ``r`` takes the ``r``-th slice of each round.

    With ``cyclic`` (validation), reading wraps around to sample 0 instead of ending, and a
    position beyond the dataset (e.g. after a resume with other ``--eval-iters``) wraps too.
    """

    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int,
                 data_parallel_rank: int, data_parallel_size: int, cyclic: bool = False) -> None:
        self.round = micro_batch_size * data_parallel_size
        if total_samples < self.round:
            raise ValueError(f"dataset has {total_samples} samples, fewer than one microbatch round "
                             f"({micro_batch_size} x {data_parallel_size} data-parallel ranks)")
        usable = total_samples - total_samples % self.round
        if cyclic:
            consumed_samples %= usable
        elif consumed_samples > total_samples:
            raise ValueError(f"consumed samples {consumed_samples} exceed the dataset's {total_samples}")
        self.total_samples = total_samples
        self.usable = usable
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.rank = data_parallel_rank
        self.cyclic = cyclic

    def __len__(self) -> int:
        if self.cyclic:
            return self.usable // self.round
        return (self.total_samples - self.consumed_samples) // self.round

    def __iter__(self) -> Iterator[List[int]]:
        start = self.consumed_samples
        lo = self.rank * self.micro_batch_size
        while True:
            if start + self.round > self.total_samples:
                if not self.cyclic:
                    return
                start = 0
            yield list(range(start + lo, start + lo + self.micro_batch_size))
            start += self.round


def build_lm_iterator(dataset: Optional[GPTDataset], consumed_samples: int, micro_batch_size: int,
                      data_parallel_rank: int, data_parallel_size: int, num_workers: int = 0,
                      cyclic: bool = False) -> Optional[Iterator[Dict[str, torch.Tensor]]]:
    """An iterator of this rank's microbatches (dicts of CPU tensors), resumed at ``consumed_samples``
    (``cyclic`` for validation: wraps around instead of ending)."""
    if dataset is None:
        return None
    sampler = PretrainingSampler(len(dataset), consumed_samples, micro_batch_size,
                                 data_parallel_rank, data_parallel_size, cyclic=cyclic)
    # A private generator: creating a loader iterator draws a seed, and it must not come from
    # the global RNG (that would shift dropout after a resume, which restores the global RNG).
    # Workers die with this process: after a kill -9 torch's own watchdog only notices within
    # seconds, and a worker blocked elsewhere (pin-memory, a slow read) may never notice.
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=device().type == "cuda",
        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0),
        worker_init_fn=functools.partial(_worker_dies_with_parent, os.getpid()) if num_workers > 0 else None,
    )
    return iter(loader)


def _worker_dies_with_parent(parent_pid: int, worker_id: int) -> None:
    from megatron_prealign.platform.process import die_with_parent

    die_with_parent(parent_pid)
