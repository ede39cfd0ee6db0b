"""Checkpoints in Megatron-LM's layout and format, both ways.

Layout (as Megatron-LM)::

    {save}/latest_checkpointed_iteration.txt      # "10"
    {save}/iter_0000010/                          # torch_dist (dist_checkpointing)
        common.pt                                 #   args, iteration, checkpoint_version,
                                                  #   opt_param_scheduler, ... (Megatron-LM's keys)
        rng_state/ ...                            #   ShardedObject, Megatron-LM's shape
        __*.distcp, .metadata, metadata.json      #   model and optimizer tensors
        prealign_meta.json                        #   our metadata (optional when loading)

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

``prealign_meta.json`` holds ``model`` (the ``GPTModelConfig`` dict), ``tokenizer``
(``describe()``), ``iteration``, ``stage``, ``train_state`` (consumed samples per stream),
``parallel`` (the layout it was saved under) and ``args``. It is optional: for a Megatron-LM
checkpoint :func:`read_meta` derives the same record from ``common.pt``'s ``args`` and the
tensors' global shapes (``model`` only when ``args`` describe the model; otherwise callers pass
the model flags).

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

import argparse
import errno
import json
import logging
import os
import random
import re
import shutil
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.dist_checkpointing.mapping import ShardedObject

from megatron_prealign.model.gpt import GPTModelConfig

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
    "meta_from_checkpoint_files",
    "resolve_model_config",
    "model_config_from_args",
    "check_model_compatible",
    "clean_stale_temporaries",
    "save_checkpoint",
    "load_checkpoint",
    "load_model_for_eval",
]

TRACKER_FILENAME = "latest_checkpointed_iteration.txt"
META_FILENAME = "prealign_meta.json"
CHECKPOINT_VERSION = 3.0
"""Megatron-LM's ``checkpoint_version`` for mcore checkpoints (QKV ordering of version 3)."""
EMBEDDING_KEY = "embedding.word_embeddings.weight"
SHAPE_FIELDS = (
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "ffn_hidden_size",
    "vocab_size",
    "max_sequence_length",
    "position_embedding_type",
    "normalization",
    "untie_embeddings_and_output_weights",
)
_TMP_RE = re.compile(r"^(?P<base>.+)\.tmp-(?P<pid>\d+)$")


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read (the message is one line and names the path).

    A ``ValueError`` so that every entry point's one-line error handler reports it.
    """


def checkpoint_dir(root: str, iteration: int) -> str:
    """``{root}/iter_{iteration:07d}`` (Megatron-LM's name)."""
    return os.path.join(root, f"iter_{iteration:07d}")


def read_latest_iteration(root: str) -> Optional[int]:
    """The iteration in ``latest_checkpointed_iteration.txt``, or ``None`` if there is none.

    Raises:
        ValueError: the tracker file exists but does not hold an iteration number.
    """
    path = os.path.join(root, TRACKER_FILENAME)
    if not os.path.isfile(path):
        return None
    text = open(path).read().strip()
    if text == "release":
        raise ValueError(f"{path}: 'release' checkpoints are not supported; use an iteration checkpoint")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}: expected an iteration number, found {text!r}") from None


def _resolve(root: str, iteration: Optional[int]) -> Tuple[str, int]:
    if iteration is None:
        iteration = read_latest_iteration(root)
        if iteration is None:
            raise FileNotFoundError(f"--load {root}: no {TRACKER_FILENAME} (not a checkpoint directory)")
    path = checkpoint_dir(root, iteration)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--load {root}: checkpoint directory {path} is missing")
    return path, iteration


# ---------------------------------------------------------------------------------------------
# Damaged files
# ---------------------------------------------------------------------------------------------


def _torch_load_any(path: str) -> Any:
    return torch.load(path, map_location="cpu", weights_only=False)


def find_damaged_file(path: str) -> Optional[str]:
    """The first missing, truncated or unreadable file of the torch_dist checkpoint ``path``.

    Checks every ``*.distcp`` file against the byte ranges the checkpoint's ``.metadata``
    records for it, and unpickles ``common.pt`` and every ShardedObject ``*.pt`` file.

    Returns:
        The file's path, or ``None`` when every file looks whole.
    """
    from torch.distributed.checkpoint import FileSystemReader

    for name in ("metadata.json", ".metadata"):
        if not os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    try:
        with open(os.path.join(path, "metadata.json")) as f:
            json.load(f)
    except (OSError, ValueError):
        return os.path.join(path, "metadata.json")
    try:
        storage = FileSystemReader(path).read_metadata().storage_data or {}
    except Exception:
        return os.path.join(path, ".metadata")
    needed: Dict[str, int] = {}
    for info in storage.values():
        end = int(info.offset) + int(info.length)
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), end)
    for rel, end in sorted(needed.items()):
        file = os.path.join(path, rel)
        if not os.path.isfile(file) or os.path.getsize(file) < end:
            return file
    for dirpath, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            if name.endswith(".pt"):
                try:
                    _torch_load_any(os.path.join(dirpath, name))
                except Exception:
                    return os.path.join(dirpath, name)
    return None


def _damaged_error(path: str, exc: BaseException) -> Optional[CheckpointError]:
    bad = find_damaged_file(path)
    if bad is None:
        return None
    size = os.path.getsize(bad) if os.path.isfile(bad) else None
    what = "missing" if size is None else f"truncated or corrupt ({size} bytes)"
    return CheckpointError(f"{bad}: checkpoint file {what}; {type(exc).__name__} while loading "
                           "(the save was interrupted or the file was damaged; load an earlier iteration)")


def _guarded_load(sharded_state_dict: Dict[str, Any], path: str, **kwargs: Any) -> Dict[str, Any]:
    """``dist_checkpointing.load`` that names a damaged file in one line instead of a traceback."""
    try:
        return dist_checkpointing.load(sharded_state_dict, path, **kwargs)
    except BaseException as exc:  # torch's CheckpointException derives from BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        err = _damaged_error(path, exc)
        if err is not None:
            raise err from None
        raise


def read_common(path: str) -> Dict[str, Any]:
    """``common.pt`` of the torch_dist checkpoint folder ``path`` (one-line errors).

    Raises:
        CheckpointError: not a torch_dist checkpoint, or ``common.pt`` is damaged.
    """
    if not dist_checkpointing.check_is_distributed_checkpoint(path):
        raise CheckpointError(f"{path}: not a torch_dist checkpoint (no metadata.json); only Megatron's "
                              "torch_dist format is supported (convert legacy 'torch' checkpoints first)")
    common_file = os.path.join(path, "common.pt")
    if not os.path.isfile(common_file):
        return {}
    try:
        common = dist_checkpointing.load_common_state_dict(path)
    except Exception as exc:
        raise CheckpointError(f"{common_file}: checkpoint file truncated or corrupt "
                              f"({os.path.getsize(common_file)} bytes; {type(exc).__name__})") from None
    return dict(common or {})


def _args_dict(common: Mapping[str, Any]) -> Dict[str, Any]:
    args = common.get("args")
    if isinstance(args, argparse.Namespace) or hasattr(args, "__dict__") and not isinstance(args, dict):
        return dict(vars(args))
    return dict(args) if isinstance(args, dict) else {}


# ---------------------------------------------------------------------------------------------
# Megatron-LM arguments <-> GPTModelConfig
# ---------------------------------------------------------------------------------------------


def model_config_from_args(args: Mapping[str, Any], vocab_size: Optional[int] = None,
                           where: str = "checkpoint args") -> Dict[str, Any]:
    """The :class:`GPTModelConfig` fields a Megatron-LM argument namespace describes.

    Args:
        args: Megatron-LM argument names and values (``vars(args)``; ``common.pt``'s ``args``).
        vocab_size: padded vocabulary size; default ``args['padded_vocab_size']``.
        where: names the source in errors.

    Returns:
        Keyword arguments for ``GPTModelConfig`` (only fields it has).

    Raises:
        ValueError: a required field is missing, or the args describe a model this project
            cannot build (one line, naming the Megatron-LM flag).
    """
    fields = set(GPTModelConfig.__dataclass_fields__)
    missing = [f"--{k.replace('_', '-')}" for k in ("num_layers", "hidden_size", "num_attention_heads")
               if args.get(k) is None]
    max_pos = args.get("max_position_embeddings") or args.get("seq_length")
    if max_pos is None:
        missing.append("--max-position-embeddings")
    vocab = vocab_size if vocab_size is not None else args.get("padded_vocab_size")
    if vocab is None:
        missing.append("the padded vocabulary (checkpoint has no word embeddings)")
    if missing:
        raise ValueError(f"{where}: model shape incomplete, pass " + ", ".join(missing))
    unsupported = []
    if args.get("num_experts"):
        unsupported.append("--num-experts (MoE)")
    if args.get("add_bias_linear") is False or args.get("disable_bias_linear"):
        unsupported.append("--disable-bias-linear")
    if args.get("swiglu") and "swiglu" not in fields:
        unsupported.append("--swiglu")
    if args.get("squared_relu"):
        unsupported.append("--squared-relu")
    if args.get("qk_layernorm"):
        unsupported.append("--qk-layernorm")
    gqa = args.get("group_query_attention") and args.get("num_query_groups") not in (None, args.get("num_attention_heads"))
    if gqa and "num_query_groups" not in fields:
        unsupported.append("--group-query-attention")
    if (args.get("position_embedding_type") == "rope" and args.get("rotary_percent") not in (None, 1.0)):
        unsupported.append(f"--rotary-percent {args.get('rotary_percent')}")
    if unsupported:
        raise ValueError(f"{where}: not supported by this project's GPT model: " + ", ".join(unsupported))
    out: Dict[str, Any] = {
        "num_layers": int(args["num_layers"]),
        "hidden_size": int(args["hidden_size"]),
        "num_attention_heads": int(args["num_attention_heads"]),
        "vocab_size": int(vocab),
        "max_sequence_length": int(max_pos),
        "ffn_hidden_size": args.get("ffn_hidden_size"),
        "position_embedding_type": args.get("position_embedding_type") or "learned_absolute",
        "normalization": args.get("normalization") or "LayerNorm",
        "untie_embeddings_and_output_weights": bool(args.get("untie_embeddings_and_output_weights", False)),
    }
    # Megatron-LM defaults ffn_hidden_size to 4h (or the SwiGLU size); GPTModelConfig's None is 4h.
    if out["ffn_hidden_size"] is not None and int(out["ffn_hidden_size"]) == 4 * out["hidden_size"]:
        out["ffn_hidden_size"] = None
    for key in ("hidden_dropout", "attention_dropout", "init_method_std", "bf16", "sequence_parallel", "swiglu"):
        if key in fields and args.get(key) is not None:
            out[key] = args[key]
    # Megatron-LM keeps num_query_groups (default 1) in its args even without GQA: it counts only
    # with --group-query-attention.
    if gqa and "num_query_groups" in fields:
        out["num_query_groups"] = int(args["num_query_groups"])
    return {k: v for k, v in out.items() if k in fields}


def _megatron_args(meta: Mapping[str, Any], model_cfg: Mapping[str, Any], train_state: Mapping[str, Any],
                   iteration: int) -> argparse.Namespace:
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
    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    dp = parallel_state.get_data_parallel_world_size()
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    # The run's facts: always what this save was made under.
    args.update(
        tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, data_parallel_size=dp,
        world_size=world, padded_vocab_size=int(model_cfg["vocab_size"]), iteration=iteration,
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
    for k, v in defaults.items():
        if args.get(k) is None:
            args[k] = v
    # Shape fields must be the model's, whatever the flags said (e.g. a kept vocabulary padding).
    args.update(num_layers=model_cfg["num_layers"], hidden_size=h, num_attention_heads=heads)
    return argparse.Namespace(**args)


def meta_from_checkpoint_files(path: str, iteration: int) -> Dict[str, Any]:
    """What ``prealign_meta.json`` would hold, derived from a Megatron-LM checkpoint."""
    common = read_common(path)
    args = _args_dict(common)
    vocab = None
    try:
        tensors = dist_checkpointing.load_tensors_metadata(path)
        if EMBEDDING_KEY in tensors:
            vocab = int(tensors[EMBEDDING_KEY].global_shape[0])
    except Exception as exc:
        err = _damaged_error(path, exc)
        if err is not None:
            raise err from None
        raise
    meta: Dict[str, Any] = {
        "iteration": int(common.get("iteration", iteration)),
        "args": args,
        "source": "megatron-lm",
        "vocab_size": vocab,
        "train_state": {
            "iteration": int(common.get("iteration", iteration)),
            "consumed_train_samples": int(args.get("consumed_train_samples", 0) or 0),
            "consumed_valid_samples": int(args.get("consumed_valid_samples", 0) or 0),
        },
    }
    if args.get("tensor_model_parallel_size") is not None:
        meta["parallel"] = {
            "tensor_model_parallel_size": int(args.get("tensor_model_parallel_size") or 1),
            "pipeline_model_parallel_size": int(args.get("pipeline_model_parallel_size") or 1),
            "data_parallel_size": int(args.get("data_parallel_size") or 0),
        }
    if args.get("num_layers") is not None:
        meta["model"] = model_config_from_args(args, vocab, where=f"{path}/common.pt args")
    tok = {k: args.get(k) for k in ("tokenizer_type", "vocab_file", "merge_file", "tokenizer_model")
           if args.get(k)}
    if tok.get("tokenizer_type"):
        meta["tokenizer_args"] = tok
    return meta


def read_meta(root: str, iteration: Optional[int] = None) -> Dict[str, Any]:
    """Metadata of the latest (or given) checkpoint under ``root``.

    ``prealign_meta.json`` when present; otherwise (a Megatron-LM checkpoint) the same record
    derived from ``common.pt`` (``args``, ``iteration``) and the embedding's global shape, with
    ``source: "megatron-lm"``; ``model`` is present only when ``args`` describe the model.
    """
    path, iteration = _resolve(root, iteration)
    meta_path = os.path.join(path, META_FILENAME)
    if not os.path.isfile(meta_path):
        return meta_from_checkpoint_files(path, iteration)
    try:
        with open(meta_path) as f:
            return json.load(f)
    except ValueError as exc:
        raise CheckpointError(f"{meta_path}: invalid JSON ({exc}); the file is damaged") from None


def check_model_compatible(meta: Dict[str, Any], cfg: GPTModelConfig, where: str) -> None:
    """Raise a one-line ``ValueError`` when the checkpoint's model shape differs from ``cfg``.

    A Megatron-LM checkpoint without ``args`` has no recorded shape: only the vocabulary (from
    the embedding's shape) is compared; dist_checkpointing reports any other mismatch on load.
    """
    saved = meta.get("model")
    wanted = cfg.to_dict()
    if saved is None:
        saved = {"vocab_size": meta.get("vocab_size")} if meta.get("vocab_size") else {}
        fields = tuple(saved)
    else:
        fields = SHAPE_FIELDS
    diffs = [f"{k}={saved.get(k)!r} (checkpoint) vs {wanted.get(k)!r} (flags)"
             for k in fields if saved.get(k) != wanted.get(k)]
    if diffs:
        raise ValueError(f"--load {where}: checkpoint model shape differs: " + "; ".join(diffs))


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


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    while hasattr(module, "module"):
        module = module.module
    return module


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


def _with_group(md: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    out = dict(md or {})
    out["dp_cp_group"] = parallel_state.get_data_parallel_group(with_context_parallel=True)
    return out


def _sharded_state_dict(model: List[torch.nn.Module], optimizer: Any, content_md: Dict[str, Any],
                        is_loading: bool) -> Dict[str, Any]:
    assert len(model) == 1, "virtual pipeline stages are not supported"
    md = _with_group(content_md)
    sd: Dict[str, Any] = {"model": _unwrap(model[0]).sharded_state_dict(metadata=md)}
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


def _write_text_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
    from megatron_prealign.platform.process import remove_dead_temporaries

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
    tmp_name = [f"{final}.tmp-{os.getpid()}"]
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
            full_meta = dict(meta)
            full_meta.update({"iteration": iteration, "train_state": dict(train_state),
                              "stage": train_state.get("stage"), "parallel": _layout()})
            with open(os.path.join(tmp, META_FILENAME), "w") as f:
                json.dump(full_meta, f, indent=2, sort_keys=True, default=str)
            if os.path.exists(final):  # re-saving the same iteration: replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
            _write_text_atomic(os.path.join(root, TRACKER_FILENAME), f"{iteration}\n")
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
    m = _unwrap(model[0])
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
    try:
        names = FileSystemReader(path).read_metadata().state_dict_metadata
    except Exception as exc:
        err = _damaged_error(path, exc)
        if err is not None:
            raise err from None
        raise
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
    path, iteration = _resolve(root, iteration)
    if _is_rank0():
        clean_stale_temporaries(root)
    common = read_common(path)
    meta = read_meta(root, iteration)
    legacy = "checkpoint_version" not in common  # written before the Megatron-LM layout
    saved = meta.get("parallel") or {}
    here = _layout()
    if legacy:
        same_layout = saved == here
    else:
        same_layout = all(int(saved.get(k, 1) or 1) == here[k]
                          for k in ("tensor_model_parallel_size", "pipeline_model_parallel_size"))
    has_rng = _has_object(path, "rng_state") and not _args_dict(common).get("no_save_rng")
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
    loaded = _guarded_load(sd, path)
    _unwrap(model[0]).load_state_dict(loaded["model"], strict=True)
    if load_optim:
        optimizer.load_state_dict(loaded["optimizer"])
        sched_state = common["opt_param_scheduler"]
        if not legacy:  # samples (Megatron-LM's unit) -> iterations
            sched_state = _scheduler_units(sched_state, 1.0 / _global_batch_size(_args_dict(common)))
        scheduler.load_state_dict(sched_state)
    if with_rng:
        state = loaded["rng_state"]
        _set_rng_state(state[0] if isinstance(state, list) else state)
    iteration = int(common.get("iteration", iteration))
    train_state = dict(common.get("train_state") or meta.get("train_state") or {})
    return iteration, train_state


def load_model_for_eval(
    load_dir: str,
    iteration: Optional[int] = None,
    for_training: bool = False,
    hidden_dropout: Optional[float] = None,
    attention_dropout: Optional[float] = None,
    model_config: Optional[Mapping[str, Any]] = None,
) -> Tuple[torch.nn.Module, GPTModelConfig, Dict[str, Any]]:
    """Build the checkpoint's model and load its weights, for evaluation (or fine-tuning).

    Uses the current ``parallel_state``; when model parallelism is not initialised yet, it
    initialises ``torch.distributed`` (1 process unless launched by torchrun) with TP=1, PP=1.
    Megatron's model-parallel RNG tracker is seeded with the checkpoint's ``--seed`` whenever
    it has no model-parallel state yet (also when the caller set up the parallel state), since
    building a model draws from it.

    By default dropout is configured off and the model is returned in ``eval()`` mode
    (deterministic evaluation). With ``for_training`` (fine-tuning, e.g. XNLI) the model keeps
    the checkpoint's dropout, or the given overrides, and is returned in ``train()`` mode.

    Args:
        load_dir: a ``--save`` directory (holding ``latest_checkpointed_iteration.txt``).
        iteration: a specific iteration; default the latest.
        for_training: keep dropout (the checkpoint's values unless overridden) and return the
            model in training mode.
        hidden_dropout: hidden dropout for fine-tuning; ``None`` keeps the checkpoint's value.
            Needs ``for_training``.
        attention_dropout: attention dropout for fine-tuning; ``None`` keeps the checkpoint's
            value. Needs ``for_training``.
        model_config: ``GPTModelConfig`` fields from the command line (model flags), for a
            Megatron-LM checkpoint whose ``common.pt`` has no ``args``; where the checkpoint
            records its model, a flag that contradicts it is an error.

    Returns:
        ``(model, cfg, meta)``: this rank's ``GPTModel``, its ``GPTModelConfig`` (with the
        dropout the model was built with) and the checkpoint's metadata (:func:`read_meta`).

    Raises:
        ValueError: a dropout override without ``for_training``, a dropout outside [0, 1), a
            vocabulary the TP size does not divide, or no model shape (one line).
    """
    from megatron.core.tensor_parallel.random import _MODEL_PARALLEL_RNG_TRACKER_NAME

    from megatron_prealign.model.gpt import build_gpt_model
    from megatron_prealign.platform import init_distributed

    overrides = {"hidden_dropout": hidden_dropout, "attention_dropout": attention_dropout}
    for name, value in overrides.items():
        if value is None:
            continue
        if not for_training:
            raise ValueError(f"load_model_for_eval: {name}={value} needs for_training=True "
                             "(evaluation always runs without dropout)")
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--{name.replace('_', '-')} {value}: expected a probability in [0, 1)")
    path, iteration = _resolve(load_dir, iteration)
    meta = read_meta(load_dir, iteration)
    model_dict = resolve_model_config(meta, model_config, where=path)
    seed = int((meta.get("args") or {}).get("seed", 1234) or 1234)
    if not parallel_state.model_parallel_is_initialized():
        init_distributed()
        parallel_state.initialize_model_parallel(1, 1)
        torch.manual_seed(seed)
    if _MODEL_PARALLEL_RNG_TRACKER_NAME not in tensor_parallel.get_cuda_rng_tracker().get_states():
        # Parallel state without Megatron's RNG tracker (set up by us above, or by a caller that
        # did not seed it): seed it as training did, or building the model fails.
        tensor_parallel.model_parallel_cuda_manual_seed(seed)
    if for_training:
        model_dict.update({k: v for k, v in overrides.items() if v is not None})
    else:
        model_dict.update(hidden_dropout=0.0, attention_dropout=0.0)
    tp = parallel_state.get_tensor_model_parallel_world_size()
    if tp == 1:
        model_dict["sequence_parallel"] = False
    cfg = GPTModelConfig(**model_dict)
    if cfg.vocab_size % tp:
        raise ValueError(f"{load_dir}: padded vocabulary {cfg.vocab_size} is not divisible by TP size {tp}")
    model = build_gpt_model(cfg)
    common = read_common(path)
    content_md = dist_checkpointing.load_content_metadata(preloaded_state_dict=common) or {}
    sd = {"model": model.sharded_state_dict(metadata=_with_group(content_md))}
    loaded = _guarded_load(sd, path)
    model.load_state_dict(loaded["model"], strict=True)
    model.train(for_training)
    return model, cfg, meta


def resolve_model_config(meta: Mapping[str, Any], flags: Optional[Mapping[str, Any]], where: str) -> Dict[str, Any]:
    """``GPTModelConfig`` fields for a checkpoint: its record, or the model flags.

    Args:
        meta: :func:`read_meta` output (``model`` absent for a Megatron-LM checkpoint without
            ``args``; ``vocab_size`` from its embedding).
        flags: fields given on the command line (``None`` values = not given).
        where: names the checkpoint in errors.

    Raises:
        ValueError: no model shape at all, or a flag contradicting the checkpoint (one line).
    """
    fields = set(GPTModelConfig.__dataclass_fields__)
    given = {k: v for k, v in (flags or {}).items() if v is not None and k in fields}
    recorded = meta.get("model")
    if isinstance(recorded, dict):
        out = {k: v for k, v in recorded.items() if k in fields}
        diffs = [f"--{k.replace('_', '-')} {v!r} (checkpoint: {out.get(k)!r})" for k, v in given.items()
                 if k in SHAPE_FIELDS and k in out and out.get(k) != v and not (k == "vocab_size")]
        if diffs:
            raise ValueError(f"{where}: model flags contradict the checkpoint: " + "; ".join(diffs))
        return out
    out = dict(given)
    if meta.get("vocab_size"):
        out["vocab_size"] = int(meta["vocab_size"])
    missing = [f"--{k.replace('_', '-')}" for k in ("num_layers", "hidden_size", "num_attention_heads")
               if k not in out]
    if "max_sequence_length" not in out:
        missing.append("--max-position-embeddings")
    if "vocab_size" not in out:
        missing.append("a vocabulary (the checkpoint has no word embeddings)")
    if missing:
        raise ValueError(f"{where}: a checkpoint without {META_FILENAME} or saved args needs the model flags: "
                         + ", ".join(missing))
    return out
