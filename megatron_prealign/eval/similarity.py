"""Aligned-word similarity per level across checkpoints (paper §5.4, Fig. 5).

For a checkpoint, draws ``num_batches`` pre-alignment microbatches from the alignment table
(:class:`~megatron_prealign.model.word_batches.WordBatchSampler`, deterministic for a seed),
and averages :func:`~megatron_prealign.model.prealign.aligned_cosine_similarity` — the mean
cosine similarity of aligned word pairs per level (input embedding, each layer, output
embedding), each word mean-pooled over its subwords — over the microbatches (each microbatch
weighs equally). The mean over pairs of *different* source words is reported as
``{level}/unaligned`` (a baseline: raw cosines are inflated by anisotropy).

Alignment as it matters for transfer (:mod:`megatron_prealign.model.alignment_metrics`): over
(source word, translation) pairs, ``{level}/raw_cosine``, ``{level}/centred_cosine`` (each
language's mean removed; for the embedding levels of an En-Clone model the mean over all rows of
the language) and ``{level}/norm_ratio`` (translation / source norm).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch


@dataclass
class SimilarityConfig:
    """How many aligned words are measured."""

    num_batches: int = 20
    """Pre-alignment microbatches averaged."""
    words_per_batch: int = 32
    """Source words per microbatch (each with its translations)."""
    micro_batch_size: int = 4
    """Rows per microbatch."""
    seq_length: int = 256
    """Tokens per row."""
    max_translations_per_word: int = 5
    """Translations kept per source word."""
    languages: Optional[Sequence[str]] = None
    """Target languages (default: all of the table)."""
    levels: Optional[Sequence[int]] = None
    """Levels (0 = input embedding, 1..L layers, L+1 output embedding; default: all)."""
    seed: int = 1234
    """Seed of the word draws."""


@torch.no_grad()
def embedding_language_means(weight: torch.Tensor, row_start: int, src_ids: Sequence[int], tgt_ids: Sequence[int]
                             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean row of each language's ids in an embedding matrix (vocabulary-sharded under TP).

    Args:
        weight: this rank's ``[rows, d]`` shard; global row ``row_start + i`` is local row ``i``.
        row_start: first global row of the shard.
        src_ids / tgt_ids: global ids of the source / target language's rows (specials excluded).

    Returns:
        ``(src_mean, tgt_mean)`` over all rows of each language (summed over the TP group).
    """
    from megatron.core import parallel_state

    out = []
    for ids in (src_ids, tgt_ids):
        ids_t = torch.as_tensor(list(ids), dtype=torch.long, device=weight.device)
        local = ids_t[(ids_t >= row_start) & (ids_t < row_start + weight.shape[0])] - row_start
        total = weight[local].double().sum(0)
        if parallel_state.model_parallel_is_initialized() and parallel_state.get_tensor_model_parallel_world_size() > 1:
            torch.distributed.all_reduce(total, group=parallel_state.get_tensor_model_parallel_group())
        out.append(total / max(1, len(ids_t)))
    return out[0], out[1]


def _slot_tokens(batch: Dict[str, object]) -> Dict[int, Tuple[int, ...]]:
    """Token ids of every word slot of a pre-alignment microbatch (one word per row, right-padded)."""
    tokens, lengths = batch["tokens"], batch["lengths"]
    return {row: tuple(int(t) for t in tokens[row, :n].tolist())
            for row, n in enumerate(lengths.tolist()) if n > 0}


@torch.no_grad()
def mean_aligned_similarity(model: torch.nn.Module, table, config: SimilarityConfig, pad_id: int = 0,
                            language_ids: Optional[Tuple[Sequence[int], Sequence[int]]] = None) -> Dict[str, float]:
    """Aligned-word similarity per level: the mean cosine over all pairs of a word group (paper
    Fig. 5, ``{level}``), the unaligned baseline (``{level}/unaligned``), and, over
    (source word, translation) pairs, :func:`~megatron_prealign.model.alignment_metrics.alignment_stats`:
    ``{level}/raw_cosine``, ``{level}/centred_cosine``, ``{level}/norm_ratio``.

    The centred cosine removes each language's mean: for the embedding levels (``emb``, ``out``)
    the mean over *all* rows of that language when ``language_ids`` is given (En-Clone: English
    ids < V, clone ids >= V, specials excluded), else (and for layers) the mean over the measured
    words of that language (each word once).

    Args:
        model: this rank's ``GPTModel`` (TP/PP as the PreAlign loss supports).
        table: an ``AlignmentTable``.
        config: sampling settings.
        pad_id: padding token id.
        language_ids: ``(source ids, target ids)`` whose embedding rows define the languages' means.
    """
    from megatron_prealign.model.alignment_metrics import alignment_stats
    from megatron_prealign.model.prealign import (
        aligned_cosine_similarity, level_name, output_embedding_weight, pooled_level_features,
        resolve_levels, stage_levels)
    from megatron.core.utils import unwrap_model
    from megatron_prealign.model.word_batches import WordBatchConfig, WordBatchSampler

    sampler = WordBatchSampler(table, WordBatchConfig(
        words_per_microbatch=config.words_per_batch, micro_batch_size=config.micro_batch_size,
        seq_length=config.seq_length, max_translations_per_word=config.max_translations_per_word,
        languages=config.languages, seed=config.seed, pad_id=pad_id))
    device = next(model.parameters()).device
    sums: Dict[str, float] = defaultdict(float)
    counts: Dict[str, int] = defaultdict(int)
    gpt = unwrap_model(model)
    levels = stage_levels(gpt, resolve_levels(config.levels, gpt.config.num_layers))
    names = [level_name(lv, gpt.config.num_layers) for lv in levels]
    src_feats: Dict[str, list] = defaultdict(list)
    tgt_feats: Dict[str, list] = defaultdict(list)
    src_words: Dict[str, list] = defaultdict(list)
    tgt_words: Dict[str, list] = defaultdict(list)
    for i in range(config.num_batches):
        batch = sampler.microbatch(i)
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        for k, v in aligned_cosine_similarity(model, batch, config.levels).items():
            sums[k] += v
            counts[k] += 1
        was_training = gpt.training
        gpt.eval()
        try:
            features, _ = pooled_level_features(model, batch, levels, need_output=False)
        finally:
            gpt.train(was_training)
        slots = _slot_tokens({k: batch[k].cpu() for k in ("tokens", "lengths")})
        labels = batch["word_labels"].tolist()
        src_slot: Dict[int, int] = {}
        pairs = []
        for slot, label in enumerate(labels):
            if label < 0:
                continue
            if label not in src_slot and slots.get(slot) == tuple(int(t) for t in table.entries[label].ids):
                src_slot[label] = slot  # the source word (packed first in its group)
            elif label in src_slot:
                pairs.append((src_slot[label], slot))
        if not pairs:
            continue
        s_idx = torch.tensor([a for a, _ in pairs], device=features.device)
        t_idx = torch.tensor([b for _, b in pairs], device=features.device)
        tgt_unique = torch.tensor(sorted({b for _, b in pairs}), device=features.device)
        src_unique = torch.tensor(sorted(set(src_slot.values())), device=features.device)
        for j, name in enumerate(names):
            src_feats[name].append(features[j, s_idx].double().cpu())
            tgt_feats[name].append(features[j, t_idx].double().cpu())
            src_words[name].append(features[j, src_unique].double().cpu())
            tgt_words[name].append(features[j, tgt_unique].double().cpu())
    out = {k: sums[k] / counts[k] for k in sums}
    num_layers = gpt.config.num_layers
    for lv, name in zip(levels, names):
        if not src_feats[name]:
            continue
        src_mean = torch.cat(src_words[name]).mean(0)
        tgt_mean = torch.cat(tgt_words[name]).mean(0)
        if language_ids is not None and lv in (0, num_layers + 1):
            if lv == 0:
                emb = gpt.embedding.word_embeddings
                weight, start = emb.weight, emb.vocab_start_index
            else:
                from megatron.core import parallel_state

                weight = output_embedding_weight(gpt)
                start = parallel_state.get_tensor_model_parallel_rank() * weight.shape[0]
            src_mean, tgt_mean = (m.cpu() for m in embedding_language_means(weight, start, *language_ids))
        stats = alignment_stats(torch.cat(src_feats[name]), torch.cat(tgt_feats[name]), src_mean, tgt_mean)
        for key in ("raw_cosine", "centred_cosine", "norm_ratio"):
            out[f"{name}/{key}"] = stats[key]
    return out


def clone_language_ids(tokenizer) -> Optional[Tuple[List[int], List[int]]]:
    """``(English ids, clone ids)`` of an En-Clone tokenizer (specials excluded), else ``None``."""
    v = getattr(tokenizer, "base_vocab_size", None)
    if v is None:
        return None
    special = set(int(i) for i in tokenizer.special_ids)
    english = [i for i in range(v) if i not in special]
    return english, [i + v for i in english]


def list_iterations(load_dir: str) -> List[int]:
    """Iterations with an ``iter_*`` folder under a checkpoint root, ascending."""
    if not os.path.isdir(load_dir):
        raise FileNotFoundError(f"--load {load_dir}: no such directory")
    its = sorted(int(m.group(1)) for name in os.listdir(load_dir) if (m := re.fullmatch(r"iter_(\d+)", name)))
    if not its:
        raise FileNotFoundError(f"--load {load_dir}: no iter_* checkpoints")
    return its


def plot_curves(series: Dict[str, Dict[int, float]], path: str, ylabel: str, title: str = "") -> None:
    """One line per series (x = iteration), saved as a PNG (Agg backend, temporary name + rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in series.items():
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="o", label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    from megatron_prealign.platform.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
