"""The alignment stream of a training job: pre-alignment microbatches from an alignment table.

Wraps :class:`megatron_prealign.model.word_batches.WordBatchSampler` with what the loop needs:
a resumable position (microbatch index, saved in checkpoints), the startup checks (table ids
inside the model vocabulary, a microbatch can hold a positive pair, the table was made with
this tokenizer) and the aligned-word cosine similarity of paper Fig. 5 on a fixed probe
microbatch. The loss itself is :class:`megatron_prealign.model.prealign.PreAlignForwardStep`.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, Optional, Sequence

import torch
from megatron.core import parallel_state
from megatron.core.utils import unwrap_model

from megatron_prealign.model.prealign import aligned_cosine_similarity
from megatron_prealign.model.word_batches import WordBatchConfig, WordBatchSampler
from megatron_prealign.platform import device

logger = logging.getLogger(__name__)

__all__ = ["AlignmentStream", "build_alignment_stream"]


class AlignmentStream:
    """Pre-alignment microbatches for this DP rank, continuing from a saved position.

    Args:
        sampler: the word-batch sampler (deterministic in the microbatch index).
        levels: levels the loss uses (``None`` = all), for logging names.
        start: microbatch index to continue from.
    """

    def __init__(self, sampler: WordBatchSampler, levels: Optional[Sequence[int]] = None, start: int = 0) -> None:
        self.sampler = sampler
        self.levels = levels
        self.next_index = start
        self._probe: Optional[Dict[str, Any]] = None

    def take(self, count: int) -> Iterator[Dict[str, Any]]:
        """The next ``count`` microbatches (lazily built), advancing the position now."""
        first = self.next_index
        self.next_index += count
        return (self.sampler.microbatch(i) for i in range(first, first + count))

    def state_dict(self) -> Dict[str, Any]:
        """Position for checkpoints."""
        return {"microbatch_index": self.next_index}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the position."""
        self.next_index = int(state.get("microbatch_index", 0))

    def probe(self) -> Dict[str, Any]:
        """A fixed microbatch (index 0) for tracking aligned similarity over training."""
        if self._probe is None:
            self._probe = self.sampler.microbatch(0)
        return self._probe

    def aligned_cosine(self, model: torch.nn.Module) -> float:
        """Mean cosine similarity of aligned words' input embeddings on the probe (Fig. 5).

        Collective over the TP and PP groups (call on every rank); the value is computed on the
        first pipeline stage and known to all ranks of the pipeline afterwards.
        """
        value = torch.zeros(1, dtype=torch.float64)
        gpt = unwrap_model(model)
        if gpt.pre_process:
            sims = aligned_cosine_similarity(model, self.probe(), levels=[0])
            value[0] = sims["emb"]
        if parallel_state.get_pipeline_model_parallel_world_size() > 1:
            buf = value.to(device())
            torch.distributed.all_reduce(buf, group=parallel_state.get_pipeline_model_parallel_group())
            value = buf.cpu()
        return float(value[0])


def build_alignment_stream(
    table_path: str,
    tokenizer: Any,
    model_vocab_size: int,
    words_per_microbatch: int,
    micro_batch_size: int,
    seq_length: int,
    seed: int,
    levels: Optional[Sequence[int]],
    data_parallel_rank: int,
    data_parallel_size: int,
) -> AlignmentStream:
    """Load and check an alignment table and build this rank's stream.

    Raises:
        FileNotFoundError: no table at ``table_path``.
        ValueError (one line, naming ``--alignment-table``): ids outside the tokenizer or model
            vocabulary; a table made with another tokenizer; a microbatch too small to hold a
            positive pair.
    """
    from megatron_prealign.alignment import AlignmentTable, check_table_tokenizer

    table = AlignmentTable.load(table_path)
    vocab = min(int(tokenizer.vocab_size), int(model_vocab_size))
    try:
        table.validate(vocab)
    except ValueError as exc:
        raise ValueError(f"--alignment-table: {exc} (model vocabulary {model_vocab_size}, tokenizer "
                         f"{tokenizer.vocab_size})") from None
    check_table_tokenizer(table, tokenizer, "--alignment-table")
    config = WordBatchConfig(
        words_per_microbatch=words_per_microbatch,
        micro_batch_size=micro_batch_size,
        seq_length=seq_length,
        seed=seed,
        pad_id=int(getattr(tokenizer, "pad", 0) or 0),
    )
    try:
        sampler = WordBatchSampler(table, config, dp_rank=data_parallel_rank, dp_size=data_parallel_size)
        stream = AlignmentStream(sampler, levels)
        stream.probe()  # a microbatch without a positive pair fails here, before training
    except ValueError as exc:
        raise ValueError(f"--alignment-table {table_path}: {exc}") from None
    return stream
