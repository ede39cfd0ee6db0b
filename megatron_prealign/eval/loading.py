"""Loading a checkpoint (and its tokenizer) for evaluation: the single entry point tools use.

Evaluation needs no training flags: the model shape comes from the checkpoint's
``prealign_meta.json`` (``model``: the :class:`~megatron_prealign.model.gpt.GPTModelConfig`
dict) via ``megatron_prealign.checkpoint.layout.load_model_for_eval``; the tokenizer from
its ``tokenizer`` record unless the user passes tokenizer flags.

A Megatron-LM checkpoint (torch_dist, no ``prealign_meta.json``) loads too: its model shape
comes from the ``args`` Megatron-LM saved in ``common.pt`` (as ``--use-checkpoint-args``) and
the embedding's shape, or, when it saved none, from the model flags
(:func:`megatron_prealign.cli.evaluation.add_checkpoint_args`: ``--num-layers``, ``--hidden-size``, ...); its tokenizer from the
tokenizer flags, or from the tokenizer args it saved.

Errors are one line (:class:`EvalLoadError`) and raised before any result file is written.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import torch

from megatron_prealign.checkpoint.layout import (  # noqa: F401  (read_meta, resolve_checkpoint_dir: eval's names)
    CheckpointError,
    load_model_for_eval,
    read_meta,
    resolve_checkpoint,
    resolve_model_config,
)

EvalLoadError = CheckpointError
"""A checkpoint or tokenizer cannot be used for evaluation (message is one line)."""
resolve_checkpoint_dir = resolve_checkpoint


def check_tokenizer_matches(tokenizer: Any, model_vocab_size: int, meta: Optional[Dict[str, Any]] = None, where: str = "") -> None:
    """Fail with one line if ``tokenizer`` cannot be the checkpoint's tokenizer.

    The model's (padded) vocabulary must hold every tokenizer id; when the checkpoint recorded
    its tokenizer (``describe()``), type, vocabulary size, EOD and file hashes must agree
    (``megatron_prealign.tokenizer.same_tokenizer``; paths may differ).
    """
    where = where or "checkpoint"
    tok_v = int(tokenizer.vocab_size)
    recorded = meta.get("tokenizer") if meta else None
    if isinstance(recorded, dict) and recorded:
        rec_v = recorded.get("vocab_size")
        if rec_v is not None and int(rec_v) != tok_v:
            raise EvalLoadError(f"{where}: tokenizer vocab_size {tok_v} != {rec_v} recorded in the checkpoint")
        describe = getattr(tokenizer, "describe", None)
        if describe is not None:
            from megatron_prealign.tokenizer import same_tokenizer

            mine = describe()
            if not same_tokenizer(mine, recorded):
                raise EvalLoadError(
                    f"{where}: tokenizer {mine.get('type')} (vocab {mine.get('vocab_size')}) differs from the checkpoint's "
                    f"{recorded.get('type')} (vocab {recorded.get('vocab_size')}; files or EOD differ)"
                )
    if tok_v > model_vocab_size:
        raise EvalLoadError(f"{where}: tokenizer vocab_size {tok_v} exceeds the model's vocabulary {model_vocab_size}")


def tokenizer_from_meta(meta: Dict[str, Any], where: str = "") -> Any:
    """Rebuild the tokenizer recorded by ``describe()`` in the checkpoint meta.

    Handles every ``megatron_prealign.tokenizer`` type, including ``EnCloneTokenizer`` (whose
    record nests the base tokenizer under ``base``) and ``NullTokenizer`` (``vocab_size`` N+1).
    """
    desc = meta.get("tokenizer")
    if (not isinstance(desc, dict) or not desc) and isinstance(meta.get("tokenizer_args"), dict):
        # A Megatron-LM checkpoint: the tokenizer flags it was trained with (its args).
        targs = meta["tokenizer_args"]
        desc = {"type": targs.get("tokenizer_type"),
                **{k: targs[k] for k in ("vocab_file", "merge_file", "tokenizer_model") if targs.get(k)}}
        if desc["type"] == "NullTokenizer" and (meta.get("args") or {}).get("vocab_size"):
            desc["vocab_size"] = int(meta["args"]["vocab_size"]) + 1
    if not isinstance(desc, dict) or not desc:
        raise EvalLoadError(f"{where}: checkpoint records no tokenizer; pass --tokenizer-type and its files")
    from megatron_prealign import tokenizer as tk

    clone = desc.get("type") == "EnCloneTokenizer"
    base = desc.get("base") if clone else desc
    if not isinstance(base, dict) or not base.get("type"):
        raise EvalLoadError(f"{where}: checkpoint tokenizer record has no type; pass --tokenizer-type")
    kwargs: Dict[str, Any] = {k: base[k] for k in ("vocab_file", "merge_file", "tokenizer_model") if base.get(k)}
    for k, v in kwargs.items():
        if not os.path.exists(v):
            raise EvalLoadError(f"{where}: tokenizer file {v} recorded in the checkpoint is missing; pass --{k.replace('_', '-')}")
    if base["type"] == "NullTokenizer":
        kwargs["vocab_size"] = int(base["vocab_size"]) - 1
    if base.get("vocab_extra_ids"):
        kwargs["vocab_extra_ids"] = int(base["vocab_extra_ids"])
    try:
        tok = tk.build_tokenizer(base["type"], **kwargs)
    except (OSError, ValueError) as exc:
        raise EvalLoadError(f"{where}: cannot rebuild the checkpoint's tokenizer: {exc}") from None
    return tk.EnCloneTokenizer(tok) if clone else tok


def load_checkpoint_for_eval(
    load_dir: str,
    iteration: Optional[int] = None,
    tokenizer: Any = None,
    for_training: bool = False,
    hidden_dropout: Optional[float] = None,
    attention_dropout: Optional[float] = None,
    model_config: Optional[Dict[str, Any]] = None,
) -> Tuple[torch.nn.Module, Any, Dict[str, Any], Any]:
    """Load a checkpoint for evaluation under the current parallel state (TP=1, PP=1 by default).

    Args:
        load_dir: Megatron-LM checkpoint root (``--load``) or one ``iter_*`` folder.
        iteration: iteration to load (default: latest).
        tokenizer: tokenizer to use; default: the one recorded in the checkpoint.
        for_training: fine-tuning (XNLI): keep the checkpoint's dropout (or the overrides below)
            and return the model in train mode; default evaluation, dropout off, eval mode.
        hidden_dropout: hidden dropout override for ``for_training`` (``None``: the checkpoint's).
        attention_dropout: attention dropout override for ``for_training`` (``None``: the checkpoint's).
        model_config: ``GPTModelConfig`` fields from model flags (``None`` values: not given);
            needed only for a Megatron-LM checkpoint that saved no ``args``; where the
            checkpoint records its shape, a contradicting flag is an error.

    Returns:
        ``(model, cfg, meta, tokenizer)``; ``cfg`` carries the dropout the model was built with.

    Raises:
        EvalLoadError: missing checkpoint, missing meta, or a tokenizer that does not match.
    """
    ckpt_dir, _ = resolve_checkpoint(load_dir, iteration)
    meta = read_meta(ckpt_dir)
    model_cfg = resolve_model_config(meta, model_config, where=ckpt_dir)
    if "vocab_size" not in model_cfg:
        raise EvalLoadError(f"{ckpt_dir}: the checkpoint records no model vocabulary (no 'model' config with a vocab_size)")
    if tokenizer is None:
        tokenizer = tokenizer_from_meta(meta, where=ckpt_dir)
    check_tokenizer_matches(tokenizer, int(model_cfg["vocab_size"]), meta, where=ckpt_dir)
    # load_model_for_eval seeds Megatron's RNG tracker itself when the caller has not.
    model, cfg, meta2 = load_model_for_eval(ckpt_dir, for_training=for_training, hidden_dropout=hidden_dropout,
                                            attention_dropout=attention_dropout, model_config=model_config)
    return model, cfg, meta2, tokenizer


def checkpoint_record(load_dir: str, meta: Dict[str, Any]) -> Dict[str, Any]:
    """What result JSONs record about the evaluated checkpoint."""
    return {
        "load": os.path.abspath(load_dir),
        "iteration": meta.get("iteration"),
        "stage": meta.get("stage"),
        "tokenizer": meta.get("tokenizer"),
    }
