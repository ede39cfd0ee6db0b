"""Checkpoints in Megatron-LM's layout: the one owner of names, metadata and reading them.

Training (:mod:`megatron_prealign.training.checkpointing`, which writes checkpoints and restores
optimizer/RNG state), evaluation (:mod:`megatron_prealign.eval.loading`) and export
(:mod:`megatron_prealign.export.hf`) all find, read and validate checkpoints through this module.

Layout (as Megatron-LM)::

    {save}/latest_checkpointed_iteration.txt      # "10"
    {save}/iter_0000010/                          # torch_dist (dist_checkpointing)
        common.pt                                 #   args, iteration, checkpoint_version, ...
        __*.distcp, .metadata, metadata.json      #   model (and optimizer, RNG) tensors
        prealign_meta.json                        #   what is saved with the model (optional)

``prealign_meta.json`` holds ``model`` (the ``GPTModelConfig`` dict), ``tokenizer``
(``describe()``), ``config``, ``args`` (our flags, Megatron-LM names), ``iteration``, ``stage``,
``train_state`` and ``parallel`` (the layout it was saved under). For a Megatron-LM checkpoint
without it, :func:`read_meta` derives the same record from ``common.pt``'s ``args`` and the
tensors' global shapes (``source: "megatron-lm"``; ``model`` only when ``args`` describe the
model, ``tokenizer_args`` when they name a tokenizer).

Errors are one line and name the file: :class:`CheckpointError` (a ``ValueError``), and
:class:`CheckpointNotFoundError` (also a ``FileNotFoundError``) when there is no checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import torch
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel

from megatron_prealign.model.gpt import GPTModelConfig
from megatron_prealign.platform.errors import error_line

__all__ = [
    "TRACKER_FILENAME",
    "META_FILENAME",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "CheckpointNotFoundError",
    "checkpoint_dir",
    "read_latest_iteration",
    "resolve_checkpoint",
    "find_damaged_file",
    "damaged_files_named",
    "guarded_load",
    "read_common",
    "common_args",
    "load_pt",
    "model_config_from_args",
    "meta_from_checkpoint_files",
    "read_meta",
    "check_model_compatible",
    "resolve_model_config",
    "sharding_metadata",
    "load_model_for_eval",
    "MODEL_PREFIXES",
    "load_model_tensors",
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
_ITER_RE = re.compile(r"iter_(\d+)")


class CheckpointError(ValueError):
    """A checkpoint cannot be written, read or used (the message is one line and names the path).

    A ``ValueError`` so that every entry point's one-line error handler reports it.
    """


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """There is no checkpoint where one was asked for (no folder, tracker or ``iter_*`` folder)."""


def checkpoint_dir(root: str, iteration: int) -> str:
    """``{root}/iter_{iteration:07d}`` (Megatron-LM's name)."""
    return os.path.join(root, f"iter_{iteration:07d}")


def read_latest_iteration(root: str) -> Optional[int]:
    """The iteration in ``latest_checkpointed_iteration.txt``, or ``None`` if there is none.

    Raises:
        CheckpointError: the tracker file exists but does not hold an iteration number.
    """
    path = os.path.join(root, TRACKER_FILENAME)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        text = fh.read().strip()
    if text == "release":
        raise CheckpointError(f"{path}: 'release' checkpoints are not supported; use an iteration checkpoint")
    if not text.isdigit():
        raise CheckpointError(f"{path}: expected an iteration number, found {text[:40]!r}")
    return int(text)


def resolve_checkpoint(load: str, iteration: Optional[int] = None) -> Tuple[str, int]:
    """The ``iter_*`` folder to read: ``{load}/iter_{iteration:07d}`` (default: the tracker's).

    Also accepts ``load`` naming an ``iter_*`` folder itself (when ``iteration`` is ``None``).

    Returns:
        ``(folder, iteration)``.

    Raises:
        CheckpointNotFoundError: no checkpoint at that path (one line, naming it).
        CheckpointError: a tracker file without an iteration number.
    """
    if not os.path.isdir(load):
        raise CheckpointNotFoundError(f"--load {load}: no such directory")
    m = _ITER_RE.fullmatch(os.path.basename(os.path.normpath(load)))
    if m and iteration is None:
        return load, int(m.group(1))
    if iteration is None:
        iteration = read_latest_iteration(load)
        if iteration is None:
            raise CheckpointNotFoundError(f"--load {load}: not a checkpoint directory (no {TRACKER_FILENAME})")
    path = checkpoint_dir(load, iteration)
    if not os.path.isdir(path):
        raise CheckpointNotFoundError(f"--load {load}: no checkpoint for iteration {iteration} ({path} missing)")
    return path, iteration


# ---------------------------------------------------------------------------------------------
# Damaged files
# ---------------------------------------------------------------------------------------------


def load_pt(path: str) -> Any:
    """A ``.pt`` file of a checkpoint, any pickled object (Megatron-LM's ``args`` Namespace), on CPU."""
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
                    load_pt(os.path.join(dirpath, name))
                except Exception:
                    return os.path.join(dirpath, name)
    return None


@contextlib.contextmanager
def damaged_files_named(path: str) -> Iterator[None]:
    """Turn a failure while reading the checkpoint ``path`` into a one-line ``CheckpointError``
    naming its damaged file (:func:`find_damaged_file`); re-raise it as is when every file is whole.

    Catches ``BaseException`` (torch's ``CheckpointException`` derives from it), never Ctrl-C or exit.
    """
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        bad = find_damaged_file(path)
        if bad is None:
            raise
        size = os.path.getsize(bad) if os.path.isfile(bad) else None
        what = "missing" if size is None else f"truncated or corrupt ({size} bytes)"
        raise CheckpointError(f"{bad}: checkpoint file {what}; {type(exc).__name__} while loading "
                              "(the save was interrupted or the file was damaged; load an earlier iteration)"
                              ) from None


def guarded_load(sharded_state_dict: Dict[str, Any], path: str, **kwargs: Any) -> Dict[str, Any]:
    """``dist_checkpointing.load`` that names a damaged file in one line instead of a traceback."""
    with damaged_files_named(path):
        return dist_checkpointing.load(sharded_state_dict, path, **kwargs)


MODEL_PREFIXES = ("embedding.", "decoder.", "output_layer.")
"""Sharded-state-dict keys of the GPT model's tensors (optimizer state, RNG, ... are other keys)."""


def load_model_tensors(path: str) -> Dict[str, torch.Tensor]:
    """Every model tensor of the torch_dist ``iter_*`` folder ``path``, global (unsharded), on CPU.

    Works for any TP/PP layout the checkpoint was saved under; optimizer state, RNG and
    TransformerEngine ``_extra_state`` are skipped. Needs a process group (one process will do).

    Returns:
        ``{sharded key: tensor}``, e.g. ``decoder.layers.self_attention.linear_qkv.weight`` of
        shape ``[num_layers, 3h, h]``.

    Raises:
        CheckpointError: not a readable checkpoint, no model tensors, or a damaged file (one line).
    """
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    try:
        metadata = dist_checkpointing.load_tensors_metadata(path)
    except Exception as exc:  # CheckpointingException, missing .metadata, ...
        raise CheckpointError(f"{path}: not a readable dist_checkpointing checkpoint ({error_line(exc)})") from None
    wanted = {k: v for k, v in metadata.items()
              if isinstance(v, ShardedTensor) and k.startswith(MODEL_PREFIXES) and "_extra_state" not in k}
    if not wanted:
        raise CheckpointError(f"{path}: the checkpoint holds no model tensors")
    loaded = guarded_load(wanted, path, validate_access_integrity=False)
    return {k: v.detach().cpu() for k, v in loaded.items() if isinstance(v, torch.Tensor)}


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


def common_args(common: Mapping[str, Any]) -> Dict[str, Any]:
    """``common.pt``'s ``args`` (an ``argparse.Namespace`` in Megatron-LM's checkpoints) as a dict."""
    args = common.get("args")
    if hasattr(args, "__dict__") and not isinstance(args, dict):
        return dict(vars(args))
    return dict(args) if isinstance(args, dict) else {}


# ---------------------------------------------------------------------------------------------
# Metadata and model shape
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
        CheckpointError: a required field is missing, or the args describe a model this project
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
        raise CheckpointError(f"{where}: model shape incomplete, pass " + ", ".join(missing))
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
        raise CheckpointError(f"{where}: not supported by this project's GPT model: " + ", ".join(unsupported))
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


def meta_from_checkpoint_files(path: str, iteration: int) -> Dict[str, Any]:
    """What ``prealign_meta.json`` would hold, derived from a Megatron-LM checkpoint."""
    common = read_common(path)
    args = common_args(common)
    vocab = None
    with damaged_files_named(path):
        tensors = dist_checkpointing.load_tensors_metadata(path)
    if EMBEDDING_KEY in tensors:
        vocab = int(tensors[EMBEDDING_KEY].global_shape[0])
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


def read_meta(load: str, iteration: Optional[int] = None) -> Dict[str, Any]:
    """Metadata of the latest (or given) checkpoint under ``load`` (or of the ``iter_*`` folder ``load``).

    ``prealign_meta.json`` when present; otherwise (a Megatron-LM checkpoint) the same record
    derived from ``common.pt`` (``args``, ``iteration``) and the embedding's global shape, with
    ``source: "megatron-lm"``; ``model`` is present only when ``args`` describe the model.

    Raises:
        CheckpointNotFoundError: no checkpoint there.
        CheckpointError: a damaged metadata file, or a checkpoint this project cannot read.
    """
    path, iteration = resolve_checkpoint(load, iteration)
    meta_path = os.path.join(path, META_FILENAME)
    if not os.path.isfile(meta_path):
        try:
            return meta_from_checkpoint_files(path, iteration)
        except CheckpointError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:
            raise CheckpointError(str(exc).splitlines()[0] if str(exc) else f"{path}: {type(exc).__name__}") from None
    try:
        with open(meta_path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path}: invalid JSON ({exc.msg} at line {exc.lineno}); the file is damaged") from None


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


def sharding_metadata(content_md: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The ``sharded_state_dict`` metadata: the checkpoint's content metadata plus the DP group."""
    out = dict(content_md or {})
    out["dp_cp_group"] = parallel_state.get_data_parallel_group(with_context_parallel=True)
    return out


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
    from megatron_prealign.platform import initialize

    overrides = {"hidden_dropout": hidden_dropout, "attention_dropout": attention_dropout}
    for name, value in overrides.items():
        if value is None:
            continue
        if not for_training:
            raise ValueError(f"load_model_for_eval: {name}={value} needs for_training=True "
                             "(evaluation always runs without dropout)")
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--{name.replace('_', '-')} {value}: expected a probability in [0, 1)")
    path, iteration = resolve_checkpoint(load_dir, iteration)
    meta = read_meta(path)  # ``path`` names its iteration
    model_dict = resolve_model_config(meta, model_config, where=path)
    seed = int((meta.get("args") or {}).get("seed", 1234) or 1234)
    if not parallel_state.model_parallel_is_initialized():
        initialize(seed=seed)
    elif _MODEL_PARALLEL_RNG_TRACKER_NAME not in tensor_parallel.get_cuda_rng_tracker().get_states():
        # A caller's parallel state without Megatron's RNG tracker seeded: seed it as training
        # did, or building the model fails.
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
    sd = {"model": model.sharded_state_dict(metadata=sharding_metadata(content_md))}
    loaded = guarded_load(sd, path)
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
            raise CheckpointError(f"{where}: model flags contradict the checkpoint: " + "; ".join(diffs))
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
        raise CheckpointError(f"{where}: a checkpoint without {META_FILENAME} or saved args needs the model flags: "
                              + ", ".join(missing))
    return out
