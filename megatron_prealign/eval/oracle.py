"""Oracle re-alignment of an En-Clone model: the ceiling the transfer evaluations can show.

After training, every aligned clone row (id ``t + V`` for a non-special English id ``t < V``) of
the input embedding and of the output layer is replaced by ``English row + language offset``,
where the offset is the model's own per-language shift: ``mean(clone rows) - mean(English rows)``
over the rows being replaced. A per-language offset costs nothing downstream (centred cosine
1), so the re-aligned model is what the model would do with perfectly aligned clone words.
``offset_scale`` shrinks the offset (``0``: exact copies of the English rows).
``alpha`` interpolates (``0``: unchanged, ``1``: full oracle), tracing the partial re-alignment
curve (centred cosine against CLKA / NLI).

Tied models share one matrix (replaced once); untied models get both matrices replaced, each with
its own offset. Works on a TP=1 model (the tool loads any checkpoint at TP=1, PP=1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

__all__ = ["OracleConfig", "aligned_english_ids", "oracle_realign"]


@dataclass
class OracleConfig:
    """What :func:`oracle_realign` replaces."""

    base_vocab_size: int
    """``V``: the English vocabulary (clone of id ``t`` is ``t + V``)."""
    english_ids: Sequence[int]
    """English ids whose clone rows are replaced (non-special, ``< V``)."""
    alpha: float = 1.0
    """Interpolation: new clone row = ``(1 - alpha) * clone + alpha * (English + offset)``."""
    offset_scale: float = 1.0
    """Multiplies the language offset (``0``: clone rows become exact copies of the English rows,
    so En-Clone inputs are English inputs and every En-Clone score must equal the English one:
    a check of the evaluation data, and a measure of how much the layers read the offset)."""
    output_offset_scale: Optional[float] = None
    """The same for the output layer of an untied model (``None``: ``offset_scale``), to tell the
    input offset's effect from the output offset's."""


def aligned_english_ids(base_vocab_size: int, special_ids: Sequence[int], table=None) -> List[int]:
    """The English ids to re-align: every non-special id ``< V``, or only the ids of the source
    words of an En-Clone alignment table (``table``; words whose clone translation is their
    cloned ids).

    Raises:
        ValueError: the table yields no id.
    """
    special = {int(i) for i in special_ids}
    if table is None:
        return [i for i in range(base_vocab_size) if i not in special]
    ids = set()
    for entry in table.entries:
        src = [int(t) for t in entry.ids]
        for translations in entry.translations.values():
            for tr in translations:
                if [int(t) for t in tr.ids] == [t + base_vocab_size if t not in special else t for t in src]:
                    ids.update(t for t in src if t not in special and 0 <= t < base_vocab_size)
    if not ids:
        raise ValueError("alignment table: no word whose translation is its cloned ids (not an En-Clone table?)")
    return sorted(ids)


@torch.no_grad()
def _realign_matrix(weight: torch.Tensor, cfg: OracleConfig, offset_scale: float) -> Dict[str, float]:
    v = cfg.base_vocab_size
    eng = torch.as_tensor(list(cfg.english_ids), dtype=torch.long, device=weight.device)
    if eng.numel() == 0:
        raise ValueError("oracle_realign: no English ids to re-align")
    if int(eng.max()) + v >= weight.shape[0] or int(eng.min()) < 0:
        raise ValueError(f"oracle_realign: ids must lie in [0, {weight.shape[0] - v}) for a {weight.shape[0]}-row matrix "
                         f"with V = {v}")
    english = weight[eng].double()
    clone = weight[eng + v].double()
    offset = clone.mean(0) - english.mean(0)
    target = english + offset_scale * offset
    new = (1.0 - cfg.alpha) * clone + cfg.alpha * target
    weight[eng + v] = new.to(weight.dtype)
    return {"rows": int(eng.numel()), "offset_norm": float(offset.norm()),
            "mean_row_change": float((new - clone).norm(dim=1).mean()),
            "offset_scale": float(offset_scale)}


@torch.no_grad()
def oracle_realign(model: torch.nn.Module, cfg: OracleConfig) -> Dict[str, Dict[str, float]]:
    """Re-align the clone rows of ``model`` in place (input embedding and, if untied, output layer).

    Args:
        model: a ``GPTModel`` at TP = 1, PP = 1.
        cfg: which rows, and how far.

    Returns:
        Per matrix (``input_embedding``, ``output_layer`` when untied): rows replaced, the norm of
        the language offset, the mean change of a clone row.

    Raises:
        ValueError: TP > 1 or PP > 1, ``alpha`` outside [0, 1], ids out of range.
    """
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized() and (
            parallel_state.get_tensor_model_parallel_world_size() > 1 or parallel_state.get_pipeline_model_parallel_world_size() > 1):
        raise ValueError("oracle re-alignment runs at TP=1, PP=1 (load the checkpoint in one process; it reshards)")
    if not 0.0 <= cfg.alpha <= 1.0:
        raise ValueError(f"--alpha {cfg.alpha}: expected a value in [0, 1]")
    while hasattr(model, "module"):
        model = model.module
    out = {"input_embedding": _realign_matrix(model.embedding.word_embeddings.weight, cfg, cfg.offset_scale)}
    if not model.share_embeddings_and_output_weights:
        scale = cfg.offset_scale if cfg.output_offset_scale is None else cfg.output_offset_scale
        out["output_layer"] = _realign_matrix(model.output_layer.weight, cfg, scale)
    return out
