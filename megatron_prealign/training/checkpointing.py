"""Saving and resuming training state in Megatron-LM's checkpoint format, both ways.

The layout, metadata and reading of checkpoints belong to :mod:`megatron_prealign.checkpoint.layout`
(its names are re-exported here); this module adds what training writes and restores.

What makes a checkpoint of ours resume in Megatron-LM with a plain ``--load`` (its
``megatron/training/checkpointing.py:load_checkpoint``):

* ``common.pt`` holds ``args`` (an ``argparse.Namespace`` with Megatron-LM's argument names,
  including ``tensor_model_parallel_size``, ``pipeline_model_parallel_size``, ``world_size``,
  ``data_parallel_size``, ``consumed_train_samples``, ``padded_vocab_size``), ``iteration``,
  ``checkpoint_version`` (3.0), ``opt_param_scheduler`` and
  ``num_floating_point_operations_so_far``;
* the RNG state is the ShardedObject ``rng_state`` holding ``[state]`` with global shape
  ``(PP, TP)`` and ``replica_id`` = DP rank, ``state`` keyed ``random_rng_state``,
  ``np_rng_state``, ``torch_rng_state``, ``cuda_rng_state``, ``rng_tracker_states``;
* the model and optimizer sharded state dicts are built with the same content metadata as
  Megatron-LM (``singleton_local_shards=False``, ``chained_optim_avoid_prefix=True``, and the
  distributed optimizer's sharding type), which is stored in the checkpoint; loading reads it
  back, so a checkpoint written by Megatron-LM's ``save_checkpoint`` loads here too.

Tensors are saved as sharded tensors with global shapes, so a checkpoint saved under one
TP/PP layout loads under another (dist_checkpointing reshards). RNG states are restored only
when TP and PP match (as Megatron-LM). Every checkpoint is written into
``iter_XXXXXXX.tmp-<pid>`` and renamed once all ranks finished, then the tracker file is
replaced atomically: a job killed mid-save leaves the previous checkpoint current, and the next
run removes such leftovers once their process is gone. A failed save (e.g. disk full) removes
its temporary directory and raises a one-line :class:`CheckpointError`; so does loading a
truncated or corrupt checkpoint file (naming the file).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shutil
from argparse import Namespace  # the class of Megatron-LM's saved ``args`` (a format, not a CLI)
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject
from megatron.core.utils import unwrap_model

from megatron_prealign.checkpoint.layout import (  # noqa: F401  (re-exported: the training-side names)
    CHECKPOINT_VERSION,
    META_FILENAME,
    TRACKER_FILENAME,
    CheckpointError,
    check_model_compatible,
    checkpoint_dir,
    common_args,
    damaged_files_named,
    guarded_load,
    load_model_for_eval,
    read_common,
    read_latest_iteration,
    read_meta,
    resolve_checkpoint,
    sharding_metadata,
)
from megatron_prealign.platform.files import write_text_atomic
from megatron_prealign.platform.process import remove_dead_temporaries, temp_name

logger = logging.getLogger(__name__)

__all__ = [
    "TRACKER_FILENAME",
    "META_FILENAME",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "checkpoint_dir",
    "read_latest_iteration",
    "read_common",
    "read_meta",
    "check_model_compatible",
    "clean_stale_temporaries",
    "save_checkpoint",
    "load_checkpoint",
    "load_model_for_eval",
]

_TMP_RE = re.compile(r"^(?P<base>.+)\.tmp-(?P<pid>\d+)$")


# ---------------------------------------------------------------------------------------------
# Megatron-LM arguments <-> GPTModelConfig
# ---------------------------------------------------------------------------------------------


def _megatron_args(meta: Mapping[str, Any], model_cfg: Mapping[str, Any], train_state: Mapping[str, Any],
                   iteration: int) -> Namespace:
    """``common.pt``'s ``args``: our flags (Megatron-LM names) plus what its loader reads."""
    plain = (str, int, float, bool, type(None))

    def keep(v: Any) -> bool:
        if isinstance(v, plain):
            return True
        if isinstance(v, (list, tuple)):
            return all(keep(x) for x in v)
        if isinstance(v, dict):
            return all(isinstance(k, str) and keep(x) for k, x in v.items())
        return False

    args = {k: v for k, v in (meta.get("args") or {}).items() if keep(v)}
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    # The run's facts: always what this save was made under.
    args.update(
        _layout(), world_size=world, padded_vocab_size=int(model_cfg["vocab_size"]), iteration=iteration,
        consumed_train_samples=int(train_state.get("consumed_train_samples", 0) or 0),
        consumed_valid_samples=int(train_state.get("consumed_valid_samples", 0) or 0),
        skipped_train_samples=int(train_state.get("skipped_train_samples", 0) or 0),
        ckpt_format="torch_dist", use_dist_ckpt=True, no_save_rng=False, no_save_optim=False,
    )
    # Model shape under Megatron-LM's names (also read by its --use-checkpoint-args).
    h = int(model_cfg["hidden_size"])
    heads = int(model_cfg["num_attention_heads"])
    rope = model_cfg.get("position_embedding_type") == "rope"
    defaults = dict(
        num_layers=model_cfg["num_layers"], hidden_size=h, num_attention_heads=heads,
        ffn_hidden_size=model_cfg.get("ffn_hidden_size") or 4 * h, kv_channels=h // heads,
        max_position_embeddings=model_cfg["max_sequence_length"], seq_length=model_cfg["max_sequence_length"],
        position_embedding_type=model_cfg.get("position_embedding_type", "learned_absolute"),
        add_position_embedding=not rope, use_rotary_position_embeddings=rope, rotary_percent=1.0,
        normalization=model_cfg.get("normalization", "LayerNorm"),
        untie_embeddings_and_output_weights=bool(model_cfg.get("untie_embeddings_and_output_weights")),
        hidden_dropout=model_cfg.get("hidden_dropout"), attention_dropout=model_cfg.get("attention_dropout"),
        init_method_std=model_cfg.get("init_method_std"), bf16=bool(model_cfg.get("bf16")), fp16=False,
        add_bias_linear=True, add_qkv_bias=False, swiglu=bool(model_cfg.get("swiglu", False)),
        squared_relu=False, group_query_attention=bool(model_cfg.get("num_query_groups")),
        num_query_groups=model_cfg.get("num_query_groups"), apply_query_key_layer_scaling=False,
        data_parallel_random_init=False, virtual_pipeline_model_parallel_size=None,
        num_layers_per_virtual_pipeline_stage=None, expert_model_parallel_size=1, num_experts=None,
        make_vocab_size_divisible_by=128, use_distributed_optimizer=False,
    )
    args.update({k: v for k, v in defaults.items() if args.get(k) is None})
    # Shape fields must be the model's, whatever the flags said (e.g. a kept vocabulary padding).
    args.update(num_layers=model_cfg["num_layers"], hidden_size=h, num_attention_heads=heads)
    return Namespace(**args)


# ---------------------------------------------------------------------------------------------
# RNG
# ---------------------------------------------------------------------------------------------


def _rng_state() -> Dict[str, Any]:
    """This rank's RNG state under Megatron-LM's keys."""
    return {
        "random_rng_state": random.getstate(),
        "np_rng_state": np.random.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        # On CPU the platform layer maps the CUDA generator onto the CPU one.
        "cuda_rng_state": torch.cuda.get_rng_state() if torch.cuda.is_available() else torch.get_rng_state(),
        "rng_tracker_states": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }


def _set_rng_state(state: Dict[str, Any]) -> None:
    if "random" in state:  # checkpoints written before the Megatron-LM layout
        state = {"random_rng_state": state["random"], "np_rng_state": state["np"],
                 "torch_rng_state": state["torch"], "cuda_rng_state": state.get("cuda"),
                 "rng_tracker_states": state["tracker"]}
    random.setstate(state["random_rng_state"])
    np.random.set_state(state["np_rng_state"])
    torch.set_rng_state(state["torch_rng_state"])
    if torch.cuda.is_available() and state.get("cuda_rng_state") is not None:
        torch.cuda.set_rng_state(state["cuda_rng_state"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["rng_tracker_states"])


def _layout() -> Dict[str, int]:
    return {
        "tensor_model_parallel_size": parallel_state.get_tensor_model_parallel_world_size(),
        "pipeline_model_parallel_size": parallel_state.get_pipeline_model_parallel_world_size(),
        "data_parallel_size": parallel_state.get_data_parallel_world_size(),
    }


def _rng_sharded_object(state: Any) -> ShardedObject:
    """Megatron-LM's ``rng_state``: ``[state]`` sharded over (PP, TP), replicated over DP."""
    return ShardedObject(
        "rng_state",
        [state],
        (parallel_state.get_pipeline_model_parallel_world_size(),
         parallel_state.get_tensor_model_parallel_world_size()),
        (parallel_state.get_pipeline_model_parallel_rank(),
         parallel_state.get_tensor_model_parallel_rank()),
        replica_id=parallel_state.get_data_parallel_rank(with_context_parallel=True),
    )


def _legacy_rng_sharded_object() -> ShardedObject:
    """The (PP, TP, DP)-shaped ``rng_state`` of checkpoints written before the Megatron-LM layout."""
    return ShardedObject(
        "rng_state", None,
        (parallel_state.get_pipeline_model_parallel_world_size(),
         parallel_state.get_tensor_model_parallel_world_size(),
         parallel_state.get_data_parallel_world_size()),
        (parallel_state.get_pipeline_model_parallel_rank(),
         parallel_state.get_tensor_model_parallel_rank(),
         parallel_state.get_data_parallel_rank()),
        replica_id=0,
    )


# ---------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------


def _content_metadata(optimizer: Any) -> Dict[str, Any]:
    """The sharded-state-dict content metadata Megatron-LM saves with (and reads back)."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    md: Dict[str, Any] = {"singleton_local_shards": False, "chained_optim_avoid_prefix": True}
    inner = getattr(optimizer, "chained_optimizers", None) or ([optimizer] if optimizer is not None else [])
    if any(isinstance(o, DistributedOptimizer) for o in inner):
        # Reshardable across TP/PP/DP like the rest of our checkpoints.
        md["distrib_optim_sharding_type"] = "fully_reshardable"
        md["distrib_optim_fully_reshardable_mem_efficient"] = False
    return md


def _sharded_state_dict(model: List[torch.nn.Module], optimizer: Any, content_md: Dict[str, Any],
                        is_loading: bool) -> Dict[str, Any]:
    assert len(model) == 1, "virtual pipeline stages are not supported"
    md = sharding_metadata(content_md)
    sd: Dict[str, Any] = {"model": unwrap_model(model[0]).sharded_state_dict(metadata=md)}
    if optimizer is not None:
        sd["optimizer"] = optimizer.sharded_state_dict(sd["model"], is_loading=is_loading, metadata=md)
    return sd


_SCHEDULER_STEP_KEYS = ("num_steps", "lr_warmup_steps", "lr_decay_steps", "wd_incr_steps", "wsd_decay_steps")


def _scheduler_units(state: Dict[str, Any], factor: float) -> Dict[str, Any]:
    """The scheduler state with its step counts multiplied by ``factor``.

    Our scheduler counts iterations; Megatron-LM's counts samples (it steps by the global batch
    size), and its loader compares warm-up/decay lengths with its own. Checkpoints hold samples.
    """
    out = dict(state)
    for key in _SCHEDULER_STEP_KEYS:
        if out.get(key) is not None:
            value = out[key] * factor
            out[key] = int(round(value)) if abs(value - round(value)) < 1e-9 else value
    return out


def _global_batch_size(args: Mapping[str, Any]) -> int:
    gbs = args.get("global_batch_size")
    return int(gbs) if gbs else 1


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _is_rank0() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def clean_stale_temporaries(root: str) -> List[str]:
    """Remove ``*.tmp-<pid>`` files and folders under ``root`` whose process is gone.

    They are what a run killed mid-save leaves (``iter_N.tmp-<pid>``,
    ``latest_checkpointed_iteration.txt.tmp-<pid>``). Only entries whose pid is not a live
    process on this host are removed, so a save in progress is never touched. Call on one rank.

    Returns:
        The removed paths.
    """
    if not os.path.isdir(root):
        return []
    return remove_dead_temporaries(root, _TMP_RE)


def save_checkpoint(
    root: str,
    iteration: int,
    model: List[torch.nn.Module],
    optimizer: Any,
    scheduler: Any,
    train_state: Dict[str, Any],
    meta: Dict[str, Any],
) -> str:
    """Save everything needed to resume at ``iteration`` (collective: call on every rank).

    The checkpoint resumes here and in Megatron-LM (plain ``--load``): see the module docstring.

    Args:
        root: ``--save`` directory.
        iteration: completed optimizer steps.
        model: model chunks (``[DDP(GPTModel)]``).
        optimizer: Megatron optimizer.
        scheduler: ``OptimizerParamScheduler``.
        train_state: small JSON-able dict (consumed samples, stage, ...), saved in the checkpoint
            and in ``prealign_meta.json``.
        meta: ``model`` (``GPTModelConfig`` dict), ``tokenizer`` describe, ``args`` (our flags,
            Megatron-LM names); written to ``prealign_meta.json`` and, as Megatron-LM's
            ``args`` namespace, to ``common.pt``.

    Returns:
        The final checkpoint directory.

    Raises:
        CheckpointError: the save failed (e.g. disk full); the temporary directory is removed,
            the previous checkpoint stays current.
    """
    final = checkpoint_dir(root, iteration)
    # One temporary name for all ranks: rank 0 chooses it, everyone receives it.
    tmp_name = [temp_name(final)]
    if torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(tmp_name, src=0)
    tmp = tmp_name[0]
    model_cfg = meta.get("model") or _unwrap_config(model)
    try:
        if _is_rank0():
            os.makedirs(root, exist_ok=True)
            clean_stale_temporaries(root)
            if os.path.exists(tmp):
                shutil.rmtree(tmp)
            os.makedirs(tmp)
        _barrier()
        content_md = _content_metadata(optimizer)
        sd = _sharded_state_dict(model, optimizer, content_md, is_loading=False)
        sd.update(
            args=_megatron_args(meta, model_cfg, train_state, iteration),
            checkpoint_version=CHECKPOINT_VERSION,
            iteration=iteration,
            num_floating_point_operations_so_far=int(train_state.get("num_floating_point_operations_so_far", 0) or 0),
            train_state=dict(train_state),
            rng_state=_rng_sharded_object(_rng_state()),
        )
        if scheduler is not None:
            sd["opt_param_scheduler"] = _scheduler_units(scheduler.state_dict(),
                                                         _global_batch_size(vars(sd["args"])))
        dist_checkpointing.save(sd, tmp, validate_access_integrity=True, content_metadata=content_md)
        _barrier()
        if _is_rank0():
            full_meta = {**meta, "iteration": iteration, "train_state": dict(train_state),
                         "stage": train_state.get("stage"), "parallel": _layout()}
            with open(os.path.join(tmp, META_FILENAME), "w") as f:
                json.dump(full_meta, f, indent=2, sort_keys=True, default=str)
            if os.path.exists(final):  # re-saving the same iteration: replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
            write_text_atomic(os.path.join(root, TRACKER_FILENAME), f"{iteration}\n")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = "; free space and rerun (training resumes from the previous checkpoint)" \
            if exc.errno == errno.ENOSPC else ""
        raise CheckpointError(f"--save {root}: saving iteration {iteration} failed: {reason}"
                              f"{f' ({exc.filename})' if exc.filename else ''}; removed {tmp}{hint}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _barrier()
    return final


def _unwrap_config(model: List[torch.nn.Module]) -> Dict[str, Any]:
    """A minimal model record from a built GPTModel (when the caller passed no ``meta['model']``)."""
    m = unwrap_model(model[0])
    c = m.config
    return {"num_layers": c.num_layers, "hidden_size": c.hidden_size, "num_attention_heads": c.num_attention_heads,
            "ffn_hidden_size": c.ffn_hidden_size, "vocab_size": m.vocab_size,
            "max_sequence_length": m.max_sequence_length, "position_embedding_type": m.position_embedding_type,
            "normalization": c.normalization,
            "untie_embeddings_and_output_weights": not m.share_embeddings_and_output_weights}


def _has_object(path: str, key: str) -> bool:
    """Whether the checkpoint holds ShardedObject ``key`` (in the torch_dist files or a folder)."""
    from torch.distributed.checkpoint import FileSystemReader

    if os.path.isdir(os.path.join(path, key)):
        return True
    with damaged_files_named(path):
        names = FileSystemReader(path).read_metadata().state_dict_metadata
    return any(name.startswith(key + "/") for name in names)


def load_checkpoint(
    root: str,
    model: List[torch.nn.Module],
    optimizer: Any,
    scheduler: Any,
    load_optim: bool = True,
    load_rng: bool = True,
    iteration: Optional[int] = None,
) -> Tuple[int, Dict[str, Any]]:
    """Load a checkpoint (ours or Megatron-LM's torch_dist) into built model/optimizer/scheduler.

    Optimizer, scheduler and RNG are restored only when asked; RNG only when the checkpoint
    was saved under the same TP and PP sizes (as Megatron-LM; otherwise the states cannot be
    mapped).

    Returns:
        ``(iteration, train_state)``; for a Megatron-LM checkpoint ``train_state`` holds the
        consumed samples from its ``args``.

    Raises:
        CheckpointError: a damaged checkpoint file, or optimizer state asked for but absent.
    """
    path, iteration = resolve_checkpoint(root, iteration)
    if _is_rank0():
        clean_stale_temporaries(root)
    common = read_common(path)
    meta = read_meta(path)
    legacy = "checkpoint_version" not in common  # written before the Megatron-LM layout
    saved = meta.get("parallel") or {}
    here = _layout()
    if legacy:
        same_layout = saved == here
    else:
        same_layout = all(int(saved.get(k, 1) or 1) == here[k]
                          for k in ("tensor_model_parallel_size", "pipeline_model_parallel_size"))
    has_rng = _has_object(path, "rng_state") and not common_args(common).get("no_save_rng")
    with_rng = load_rng and same_layout and has_rng
    if load_rng and not with_rng and _is_rank0():
        why = "it holds none" if not has_rng else f"saved under {saved}, running under {here}"
        logger.warning("checkpoint %s: RNG states not restored (%s)", path, why)
    if load_optim and "opt_param_scheduler" not in common:
        raise CheckpointError(f"{path}: the checkpoint holds no optimizer/scheduler state "
                              "(saved with --no-save-optim?); pass --no-load-optim or --finetune")
    content_md = {} if legacy else (dist_checkpointing.load_content_metadata(preloaded_state_dict=common) or {})
    sd = _sharded_state_dict(model, optimizer if load_optim else None, content_md, is_loading=True)
    if with_rng:
        sd["rng_state"] = _legacy_rng_sharded_object() if legacy else _rng_sharded_object(None)
    loaded = guarded_load(sd, path)
    unwrap_model(model[0]).load_state_dict(loaded["model"], strict=True)
    if load_optim:
        optimizer.load_state_dict(loaded["optimizer"])
        sched_state = common["opt_param_scheduler"]
        if not legacy:  # samples (Megatron-LM's unit) -> iterations
            sched_state = _scheduler_units(sched_state, 1.0 / _global_batch_size(common_args(common)))
        scheduler.load_state_dict(sched_state)
    if with_rng:
        state = loaded["rng_state"]
        _set_rng_state(state[0] if isinstance(state, list) else state)
    iteration = int(common.get("iteration", iteration))
    train_state = dict(common.get("train_state") or meta.get("train_state") or {})
    return iteration, train_state
