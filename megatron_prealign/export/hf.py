"""Export a megatron-prealign checkpoint to a Hugging Face ``transformers`` model directory.

Reading: the checkpoint is Megatron-LM's layout (``{load}/latest_checkpointed_iteration.txt``,
``{load}/iter_XXXXXXX/`` with megatron-core ``dist_checkpointing`` torch_dist shards and
``prealign_meta.json``). Only the model tensors are read, each as its *global* (unsharded)
tensor, in one process: dist_checkpointing reassembles them from whatever TP/PP layout the
checkpoint was saved under, and the layer spec does not matter either (megatron-core stores the
local spec's ``input_layernorm``/``pre_mlp_layernorm`` under the TransformerEngine names
``linear_qkv.layer_norm_*``/``linear_fc1.layer_norm_*``; both names are accepted, stacked
``decoder.layers.<name>`` tensors of shape ``[num_layers, ...]`` as well as per-layer
``decoder.layers.<i>.<name>``). Optimizer state and RNG are never loaded.

Architectures (chosen from ``GPTModelConfig`` in ``prealign_meta.json``):

* ``learned_absolute`` + ``LayerNorm`` -> ``GPT2LMHeadModel`` (Conv1D weights are the
  transpose of Megatron's ``[out, in]`` Linear weights).
* ``rope`` + ``LayerNorm`` -> ``GPTNeoXForCausalLM`` with ``use_parallel_residual=False``
  (sequential residual as Megatron), full rotary (``partial_rotary_factor=1``, base 10000,
  non-interleaved, as megatron-core's defaults).
* ``rope`` + ``RMSNorm`` -> ``ArceeForCausalLM``: the Llama architecture (RMSNorm, rotary,
  ``q/k/v/o_proj``) with a non-gated ``up_proj -> act -> down_proj`` MLP, biases on. Not
  ``LlamaForCausalLM``: ``GPTModelConfig`` has no SwiGLU, so no checkpoint of this project has
  Llama's gated MLP.
* ``learned_absolute`` + ``RMSNorm`` (no Hugging Face twin) -> one-line :class:`ExportError`.

Numerics that must match: megatron-core's default MLP activation is ``F.gelu`` (exact erf),
so the HF activation is ``"gelu"`` (not GPT-2's ``"gelu_new"`` tanh approximation); norm
epsilon 1e-5 (megatron-core's default, or ``args.norm_epsilon`` when the checkpoint records
one); attention scale 1/sqrt(head_dim); dropout 0.

Weights: Megatron's ``linear_qkv`` is ``[3h, h]`` interleaved per query group
(``[q_g, k_g, v_g]`` for each head ``g``); GPT-2's ``c_attn`` wants ``[q; k; v]`` (then
transposed to ``[h, 3h]``) and Arcee separate ``q/k/v_proj``, see :func:`split_qkv`.
GPT-NeoX's ``query_key_value`` uses Megatron's per-head layout already and is copied as is.

Vocabulary: Megatron pads the embedding (``--make-vocab-size-divisible-by`` x TP). By default the
export trims the embedding and LM head to the tokenizer's vocabulary (``prealign_meta.json``
``tokenizer.vocab_size``), so ``config.vocab_size`` equals ``len(tokenizer)`` as users expect.
Logits on real ids are unchanged; only the padding ids' logits (ids no tokenizer produces, never
seen as targets) are dropped, so a softmax renormalises over real ids. ``keep_padded_vocab=True``
keeps the padded size.

Tokenizer files: ``GPT2BPETokenizer`` (``vocab.json`` + ``merges.txt``) and
``HuggingFaceTokenizer`` (``tokenizer.json``, plus its ``tokenizer_config.json``) are copied
from the paths recorded by ``describe()`` after checking their SHA-256; other tokenizers
(SentencePiece flavours with Megatron's extra tokens, NullTokenizer, EnClone) have no HF
equivalent and are skipped with a warning.

Memory: the whole model is held twice on the CPU (checkpoint tensors + the HF model), in the
checkpoint's dtype. Needs ``transformers`` >= 5 (tested with 5.23.0).

Output: written into ``{output}.tmp-<pid>`` and renamed on success (``config.json``,
``model.safetensors``, ``generation_config.json``, tokenizer files, ``prealign_meta.json``
copied for provenance, and the sentinel ``.prealign_hf_export``). ``overwrite`` replaces only a
directory holding that sentinel (a previous export), never the checkpoint being read or a folder
containing it; an output inside the iteration folder being read is refused too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from megatron_prealign.platform.files import atomic_path, file_sha256

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_SENTINEL", "ExportError", "HFExportConfig", "export_hf", "load_checkpoint_tensors", "split_qkv"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_NORM_EPS = 1e-5  # megatron-core TransformerConfig.layernorm_epsilon
DEFAULT_ROPE_BASE = 10000.0  # megatron-core GPTModel rotary_base
TESTED_TRANSFORMERS = "5.23.0"


class ExportError(ValueError):
    """The checkpoint cannot be exported (message is one line)."""


@dataclass
class HFExportConfig:
    """What to export and where."""

    load: str
    """Megatron-LM checkpoint root (``--save`` of training) or one ``iter_XXXXXXX`` folder."""
    output: str
    """Hugging Face model directory to create (must not exist unless ``overwrite``)."""
    iteration: Optional[int] = None
    """Iteration to export; default the tracker's latest."""
    dtype: str = "auto"
    """``auto`` (the checkpoint's parameter dtype), ``float32``, ``bfloat16`` or ``float16``."""
    keep_padded_vocab: bool = False
    """Keep Megatron's padded vocabulary instead of trimming to the tokenizer's size."""
    tokenizer: bool = True
    """Copy the checkpoint's tokenizer files (when it is a GPT-2 BPE or HF tokenizer.json)."""
    overwrite: bool = False
    """Replace an existing ``output`` directory (only after the new export succeeded)."""
    extra: Dict[str, Any] = field(default_factory=dict)
    """Further ``config.json`` fields (e.g. ``{"use_cache": False}``)."""


# ---------------------------------------------------------------------------------------------
# Reading the checkpoint
# ---------------------------------------------------------------------------------------------


def _resolve(load: str, iteration: Optional[int]) -> Tuple[str, Dict[str, Any]]:
    from megatron_prealign.checkpoint.layout import CheckpointError, read_meta, resolve_checkpoint

    try:
        ckpt_dir, _ = resolve_checkpoint(load, iteration)
        meta = read_meta(ckpt_dir)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    if not isinstance(meta.get("model"), dict):
        raise ExportError(f"{ckpt_dir}/prealign_meta.json: no 'model' config")
    return ckpt_dir, meta


def load_checkpoint_tensors(ckpt_dir: str) -> Dict[str, torch.Tensor]:
    """Every model tensor of an ``iter_XXXXXXX`` folder as a global (unsharded) CPU tensor
    (:func:`~megatron_prealign.checkpoint.layout.load_model_tensors`, in a process group of its own
    when none exists)."""
    from megatron_prealign.checkpoint.layout import CheckpointError, load_model_tensors
    from megatron_prealign.platform import ensure_single_process_group

    try:
        created = ensure_single_process_group()
    except ValueError as exc:
        raise ExportError(f"export: {exc} (it loads whole tensors)") from None
    try:
        return load_model_tensors(ckpt_dir)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    finally:
        if created:
            torch.distributed.destroy_process_group()


class _Tensors:
    """Name look-up over the loaded tensors that records which ones were used."""

    def __init__(self, tensors: Dict[str, torch.Tensor], num_layers: int, where: str) -> None:
        self.tensors = tensors
        self.num_layers = num_layers
        self.where = where
        self.used: set = set()

    def _first(self, candidates: List[Tuple[str, Optional[int]]], required: bool, what: str) -> Optional[torch.Tensor]:
        """The first present ``(key, layer index or None)``; stacked ``[L, ...]`` tensors are indexed."""
        for key, index in candidates:
            if key in self.tensors:
                t = self.tensors[key]
                if index is not None and t.shape[0] != self.num_layers:
                    raise ExportError(f"{self.where}: {key} has {t.shape[0]} layers, config says {self.num_layers}")
                self.used.add(key)
                return t if index is None else t[index]
        if required:
            raise ExportError(f"{self.where}: {what} missing from the checkpoint")
        return None

    def get(self, *names: str, required: bool = True) -> Optional[torch.Tensor]:
        """The tensor under the first of ``names`` present."""
        return self._first([(name, None) for name in names], required, f"tensor {names[0]}")

    def layer(self, i: int, *names: str, required: bool = True) -> Optional[torch.Tensor]:
        """Layer ``i``'s tensor under any of ``names`` (stacked ``[L, ...]`` or per-layer keys)."""
        candidates = [c for name in names for c in ((f"decoder.layers.{name}", i), (f"decoder.layers.{i}.{name}", None))]
        return self._first(candidates, required, f"layer {i} tensor {names[0]}")

    def check_all_used(self) -> None:
        unused = sorted(set(self.tensors) - self.used)
        if unused:
            raise ExportError(f"{self.where}: tensors with no Hugging Face equivalent (unsupported model feature): "
                              + ", ".join(unused[:4]) + (" ..." if len(unused) > 4 else ""))


# ---------------------------------------------------------------------------------------------
# Weight mapping
# ---------------------------------------------------------------------------------------------


def split_qkv(qkv: torch.Tensor, num_heads: int, num_query_groups: int
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split Megatron's fused ``linear_qkv`` weight ``[G*(H/G+2)*d, ...]`` (or bias) into q, k, v.

    Megatron stores, for each query group ``g``: its ``H/G`` query heads, then its key head,
    then its value head (``d`` rows each). Returns ``q [H*d, ...]``, ``k [G*d, ...]``,
    ``v [G*d, ...]`` with heads in order, as Hugging Face's separate/concatenated projections.
    """
    if num_heads % num_query_groups:
        raise ExportError(f"{num_heads} attention heads do not divide into {num_query_groups} query groups")
    per_group = num_heads // num_query_groups
    rows = qkv.shape[0]
    if rows % (num_query_groups * (per_group + 2)):
        raise ExportError(f"linear_qkv has {rows} rows, not a multiple of {num_query_groups} x {per_group + 2} heads")
    d = rows // (num_query_groups * (per_group + 2))
    rest = tuple(qkv.shape[1:])
    grouped = qkv.reshape(num_query_groups, per_group + 2, d, *rest)
    q = grouped[:, :per_group].reshape(num_heads * d, *rest)
    k = grouped[:, per_group].reshape(num_query_groups * d, *rest)
    v = grouped[:, per_group + 1].reshape(num_query_groups * d, *rest)
    return q, k, v


@dataclass
class _Layer:
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    qkv_w: torch.Tensor
    qkv_b: torch.Tensor
    proj_w: torch.Tensor
    proj_b: torch.Tensor
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    fc1_w: torch.Tensor
    fc1_b: torch.Tensor
    fc2_w: torch.Tensor
    fc2_b: torch.Tensor


_LAYER_TENSORS = {
    "ln1": ("self_attention.linear_qkv.layer_norm_{}", "input_layernorm.{}"),
    "qkv": ("self_attention.linear_qkv.{}",),
    "proj": ("self_attention.linear_proj.{}",),
    "ln2": ("mlp.linear_fc1.layer_norm_{}", "pre_mlp_layernorm.{}"),
    "fc1": ("mlp.linear_fc1.{}",),
    "fc2": ("mlp.linear_fc2.{}",),
}
"""A layer's tensors: ``_Layer`` field prefix -> names (``{}`` = weight/bias; TE name first)."""


def _read_layers(t: _Tensors, hidden: int, norm_bias: bool = True) -> List[_Layer]:
    layers = []
    for i in range(t.num_layers):
        parts = {}
        for part, names in _LAYER_TENSORS.items():
            w = t.layer(i, *(n.format("weight") for n in names))
            # Biases are absent with --disable-bias-linear / RMSNorm: zeros are exact.
            b = t.layer(i, *(n.format("bias") for n in names), required=False) \
                if norm_bias or not part.startswith("ln") else None
            parts[f"{part}_w"], parts[f"{part}_b"] = w, _opt(b, w)
        layer = _Layer(**parts)
        qkv_w, fc1_w, fc2_w = layer.qkv_w, layer.fc1_w, layer.fc2_w
        if qkv_w.shape != (3 * hidden, hidden):
            raise ExportError(f"{t.where}: linear_qkv weight {tuple(qkv_w.shape)} is not [3h, h] = [{3 * hidden}, {hidden}] "
                              "(grouped-query attention is not supported by the exported architectures)")
        if fc2_w.shape[1] != fc1_w.shape[0]:
            raise ExportError(f"{t.where}: linear_fc1 {tuple(fc1_w.shape)} vs linear_fc2 {tuple(fc2_w.shape)}: "
                              "gated MLP (SwiGLU) is not supported")
        layers.append(layer)
    return layers


def _opt(bias: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return bias if bias is not None else torch.zeros(like.shape[0], dtype=like.dtype)


def _gpt2_state_dict(layers: List[_Layer], num_heads: int, wte: torch.Tensor, wpe: torch.Tensor,
                     final_w: torch.Tensor, final_b: torch.Tensor) -> Dict[str, torch.Tensor]:
    sd: Dict[str, torch.Tensor] = {"transformer.wte.weight": wte, "transformer.wpe.weight": wpe,
                                   "transformer.ln_f.weight": final_w, "transformer.ln_f.bias": final_b}
    for i, layer in enumerate(layers):
        p = f"transformer.h.{i}."
        q, k, v = split_qkv(layer.qkv_w, num_heads, num_heads)
        qb, kb, vb = split_qkv(layer.qkv_b, num_heads, num_heads)
        sd.update({
            p + "ln_1.weight": layer.ln1_w, p + "ln_1.bias": layer.ln1_b,
            # Conv1D computes x @ W + b with W [in, out]: the transpose of Megatron's Linear.
            p + "attn.c_attn.weight": torch.cat([q, k, v], 0).t(),
            p + "attn.c_attn.bias": torch.cat([qb, kb, vb], 0),
            p + "attn.c_proj.weight": layer.proj_w.t(), p + "attn.c_proj.bias": layer.proj_b,
            p + "ln_2.weight": layer.ln2_w, p + "ln_2.bias": layer.ln2_b,
            p + "mlp.c_fc.weight": layer.fc1_w.t(), p + "mlp.c_fc.bias": layer.fc1_b,
            p + "mlp.c_proj.weight": layer.fc2_w.t(), p + "mlp.c_proj.bias": layer.fc2_b,
        })
    return sd


def _neox_state_dict(layers: List[_Layer], wte: torch.Tensor, final_w: torch.Tensor,
                     final_b: torch.Tensor) -> Dict[str, torch.Tensor]:
    sd: Dict[str, torch.Tensor] = {"gpt_neox.embed_in.weight": wte, "gpt_neox.final_layer_norm.weight": final_w,
                                   "gpt_neox.final_layer_norm.bias": final_b}
    for i, layer in enumerate(layers):
        p = f"gpt_neox.layers.{i}."
        sd.update({
            p + "input_layernorm.weight": layer.ln1_w, p + "input_layernorm.bias": layer.ln1_b,
            # GPT-NeoX views query_key_value as [heads, 3 * head_dim]: Megatron's layout.
            p + "attention.query_key_value.weight": layer.qkv_w,
            p + "attention.query_key_value.bias": layer.qkv_b,
            p + "attention.dense.weight": layer.proj_w, p + "attention.dense.bias": layer.proj_b,
            p + "post_attention_layernorm.weight": layer.ln2_w, p + "post_attention_layernorm.bias": layer.ln2_b,
            p + "mlp.dense_h_to_4h.weight": layer.fc1_w, p + "mlp.dense_h_to_4h.bias": layer.fc1_b,
            p + "mlp.dense_4h_to_h.weight": layer.fc2_w, p + "mlp.dense_4h_to_h.bias": layer.fc2_b,
        })
    return sd


def _arcee_state_dict(layers: List[_Layer], num_heads: int, wte: torch.Tensor, final_w: torch.Tensor
                      ) -> Dict[str, torch.Tensor]:
    sd: Dict[str, torch.Tensor] = {"model.embed_tokens.weight": wte, "model.norm.weight": final_w}
    for i, layer in enumerate(layers):
        p = f"model.layers.{i}."
        q, k, v = split_qkv(layer.qkv_w, num_heads, num_heads)
        qb, kb, vb = split_qkv(layer.qkv_b, num_heads, num_heads)
        sd.update({
            p + "input_layernorm.weight": layer.ln1_w,
            p + "self_attn.q_proj.weight": q, p + "self_attn.q_proj.bias": qb,
            p + "self_attn.k_proj.weight": k, p + "self_attn.k_proj.bias": kb,
            p + "self_attn.v_proj.weight": v, p + "self_attn.v_proj.bias": vb,
            p + "self_attn.o_proj.weight": layer.proj_w, p + "self_attn.o_proj.bias": layer.proj_b,
            p + "post_attention_layernorm.weight": layer.ln2_w,
            p + "mlp.up_proj.weight": layer.fc1_w, p + "mlp.up_proj.bias": layer.fc1_b,
            p + "mlp.down_proj.weight": layer.fc2_w, p + "mlp.down_proj.bias": layer.fc2_b,
        })
    return sd


def _architecture(model_cfg: Dict[str, Any], where: str) -> str:
    pos = model_cfg.get("position_embedding_type", "learned_absolute")
    norm = model_cfg.get("normalization", "LayerNorm")
    if norm == "LayerNorm" and pos == "learned_absolute":
        return "gpt2"
    if norm == "LayerNorm" and pos == "rope":
        return "gpt_neox"
    if norm == "RMSNorm" and pos == "rope":
        return "arcee"
    raise ExportError(f"{where}: no Hugging Face export for position_embedding_type={pos!r} with normalization={norm!r} "
                      "(supported: learned_absolute+LayerNorm -> GPT-2, rope+LayerNorm -> GPT-NeoX, "
                      "rope+RMSNorm -> Arcee)")


def build_hf_model(ckpt_dir: str, meta: Dict[str, Any], tensors: Dict[str, torch.Tensor],
                   keep_padded_vocab: bool = False, dtype: str = "auto",
                   extra: Optional[Dict[str, Any]] = None) -> torch.nn.Module:
    """Map loaded Megatron tensors onto a ``transformers`` causal-LM model (in memory).

    Args:
        ckpt_dir: the ``iter_XXXXXXX`` folder (for messages).
        meta: its ``prealign_meta.json``.
        tensors: :func:`load_checkpoint_tensors` output.
        keep_padded_vocab: keep Megatron's padded vocabulary.
        dtype: ``auto`` or a key of ``DTYPES``.
        extra: further config fields.

    Returns:
        ``GPT2LMHeadModel``, ``GPTNeoXForCausalLM`` or ``ArceeForCausalLM`` in eval mode.
    """
    transformers = _import_transformers()
    mc = meta["model"]
    arch = _architecture(mc, ckpt_dir)
    num_layers, hidden, num_heads = int(mc["num_layers"]), int(mc["hidden_size"]), int(mc["num_attention_heads"])
    t = _Tensors(tensors, num_layers, ckpt_dir)
    wte = t.get("embedding.word_embeddings.weight")
    padded = int(wte.shape[0])
    if wte.shape[1] != hidden:
        raise ExportError(f"{ckpt_dir}: word embeddings {tuple(wte.shape)} do not match hidden_size {hidden}")
    tok = meta.get("tokenizer") if isinstance(meta.get("tokenizer"), dict) else {}
    tok_vocab = tok.get("vocab_size")
    if tok_vocab is not None and int(tok_vocab) > padded:
        raise ExportError(f"{ckpt_dir}: tokenizer vocab_size {tok_vocab} exceeds the model's vocabulary {padded}")
    if tok_vocab is None and not keep_padded_vocab:
        logger.warning("%s: checkpoint records no tokenizer vocab_size; keeping the padded vocabulary %d",
                       ckpt_dir, padded)
    vocab = padded if keep_padded_vocab or tok_vocab is None else int(tok_vocab)
    tied = not bool(mc.get("untie_embeddings_and_output_weights", False))
    head = t.get("output_layer.weight", required=not tied)  # tied: any copy is the same tensor
    head = None if tied else head[:vocab]
    final_w = t.get("decoder.final_layernorm.weight")
    rms = arch == "arcee"
    final_b = None if rms else _opt(t.get("decoder.final_layernorm.bias", required=False), final_w)
    layers = _read_layers(t, hidden, norm_bias=not rms)
    ffn = int(layers[0].fc1_w.shape[0]) if layers else int(mc.get("ffn_hidden_size") or 4 * hidden)
    wpe = t.get("embedding.position_embeddings.weight") if arch == "gpt2" else None
    t.check_all_used()

    eps = float((meta.get("args") or {}).get("norm_epsilon", DEFAULT_NORM_EPS))
    torch_dtype = wte.dtype if dtype == "auto" else DTYPES.get(dtype)
    if torch_dtype is None:
        raise ExportError(f"--dtype {dtype!r}: choose auto, " + ", ".join(DTYPES))
    eod = tok.get("eod")
    eod = int(eod) if eod is not None and int(eod) < vocab else None
    wte = wte[:vocab]
    if arch == "gpt2":
        config_cls, cls = transformers.GPT2Config, transformers.GPT2LMHeadModel
        fields = dict(
            n_positions=int(wpe.shape[0]), n_embd=hidden, n_layer=num_layers, n_head=num_heads,
            n_inner=ffn, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            layer_norm_epsilon=eps, scale_attn_weights=True)
        sd = _gpt2_state_dict(layers, num_heads, wte, wpe, final_w, final_b)
    elif arch == "gpt_neox":
        config_cls, cls = transformers.GPTNeoXConfig, transformers.GPTNeoXForCausalLM
        fields = dict(
            hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=num_heads,
            intermediate_size=ffn, hidden_act="gelu", attention_dropout=0.0, hidden_dropout=0.0,
            max_position_embeddings=int(mc["max_sequence_length"]), layer_norm_eps=eps,
            use_parallel_residual=False, attention_bias=True,
            rope_parameters={"rope_type": "default", "rope_theta": DEFAULT_ROPE_BASE, "partial_rotary_factor": 1.0})
        sd = _neox_state_dict(layers, wte, final_w, final_b)
    else:
        config_cls, cls = transformers.ArceeConfig, transformers.ArceeForCausalLM
        fields = dict(
            hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=num_heads,
            num_key_value_heads=num_heads, head_dim=hidden // num_heads, intermediate_size=ffn, hidden_act="gelu",
            max_position_embeddings=int(mc["max_sequence_length"]), rms_norm_eps=eps,
            attention_bias=True, mlp_bias=True, attention_dropout=0.0,
            rope_parameters={"rope_type": "default", "rope_theta": DEFAULT_ROPE_BASE})
        sd = _arcee_state_dict(layers, num_heads, wte, final_w)
    if head is not None:
        sd["lm_head.weight"] = head
    fields.update(vocab_size=vocab, tie_word_embeddings=tied, architectures=[cls.__name__],
                  bos_token_id=eod, eos_token_id=eod)
    config = config_cls(**{**fields, **(extra or {})})
    config.dtype = torch_dtype
    model = _instantiate(cls, config)
    sd = {k: v.to(torch_dtype).contiguous() for k, v in sd.items()}
    expected = set(model.state_dict())
    if tied:
        expected.discard("lm_head.weight")
    missing, unexpected = expected - set(sd), set(sd) - expected
    if missing or unexpected:  # a mapping bug, not a user error
        raise RuntimeError(f"HF state dict mismatch: missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}")
    model.load_state_dict(sd, strict=False)
    if tied:
        model.tie_weights()
        assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    return model.to(torch_dtype).eval()


def _import_transformers() -> Any:
    """``transformers`` 5.x (``rope_parameters`` configs, Arcee), or a one-line error."""
    try:
        import transformers
    except ImportError:
        raise ExportError(f"Hugging Face export needs transformers: pip install 'transformers=={TESTED_TRANSFORMERS}'") from None
    if int(transformers.__version__.split(".")[0]) < 5:
        raise ExportError(f"transformers {transformers.__version__} is too old for this export "
                          f"(needs >=5; tested with {TESTED_TRANSFORMERS})")
    return transformers


def _instantiate(cls: Any, config: Any) -> torch.nn.Module:
    """Build the HF model without spending time on random initialisation."""
    from transformers.initialization import no_init_weights  # transformers >= 5 (_import_transformers)

    with no_init_weights():
        return cls(config)


# ---------------------------------------------------------------------------------------------
# Tokenizer files
# ---------------------------------------------------------------------------------------------


def _checked_file(tok: Dict[str, Any], key: str, where: str) -> str:
    path = tok.get(key)
    if not path or not os.path.isfile(path):
        raise ExportError(f"{where}: tokenizer file {path} recorded in the checkpoint is missing "
                          "(restore it, or export with --no-tokenizer)")
    want = tok.get(f"{key}_sha256")
    if want and file_sha256(path) != want:
        raise ExportError(f"{where}: tokenizer file {path} changed since training (SHA-256 differs)")
    return path


def _token_text(tokenizer_json: str, token_id: Optional[int]) -> Optional[str]:
    if token_id is None:
        return None
    with open(tokenizer_json, encoding="utf-8") as f:
        data = json.load(f)
    for added in data.get("added_tokens") or []:
        if added.get("id") == token_id:
            return added.get("content")
    vocab = (data.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        return next((text for text, i in vocab.items() if i == token_id), None)
    return None


def write_tokenizer_files(tok: Dict[str, Any], out_dir: str, model_max_length: int, where: str) -> Optional[str]:
    """Copy the checkpoint's tokenizer into ``out_dir`` in a form ``AutoTokenizer`` loads.

    Returns:
        The tokenizer type written, or ``None`` when it has no Hugging Face equivalent.
    """
    kind = tok.get("type")
    if kind == "GPT2BPETokenizer":
        shutil.copyfile(_checked_file(tok, "vocab_file", where), os.path.join(out_dir, "vocab.json"))
        shutil.copyfile(_checked_file(tok, "merge_file", where), os.path.join(out_dir, "merges.txt"))
        config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": model_max_length,
                  "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                  "add_prefix_space": False}
    elif kind == "HuggingFaceTokenizer":
        src = _checked_file(tok, "tokenizer_model", where)
        shutil.copyfile(src, os.path.join(out_dir, "tokenizer.json"))
        beside = os.path.join(os.path.dirname(src), "tokenizer_config.json")
        config = {}
        if os.path.isfile(beside):
            with open(beside, encoding="utf-8") as f:
                config = json.load(f)
        config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
        config.setdefault("model_max_length", model_max_length)
        for key, token_id in (("eos_token", tok.get("eod")), ("pad_token", tok.get("pad"))):
            text = _token_text(src, token_id)
            if text is not None:
                config.setdefault(key, text)
    else:
        logger.warning("%s: tokenizer %s has no Hugging Face equivalent; no tokenizer files written", where, kind)
        return None
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    return kind


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


EXPORT_SENTINEL = ".prealign_hf_export"
"""File written into every export directory; ``overwrite`` deletes only directories holding it."""


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (real paths)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_output(cfg: HFExportConfig, output: str, ckpt_dir: str) -> None:
    """Refuse outputs that would destroy input data or cannot be written (one-line ExportError)."""
    for src in {os.path.abspath(cfg.load), os.path.abspath(ckpt_dir)}:
        if _inside(src, output):
            raise ExportError(f"--output {cfg.output} is or contains the checkpoint being read ({src}); choose another directory")
    if _inside(output, ckpt_dir):
        raise ExportError(f"--output {cfg.output} lies inside the checkpoint being read ({ckpt_dir}); choose another directory")
    if os.path.lexists(output):
        if not cfg.overwrite:
            raise ExportError(f"--output {cfg.output} exists (pass --overwrite to replace it)")
        if not os.path.isdir(output) or os.path.islink(output) or not os.path.isfile(os.path.join(output, EXPORT_SENTINEL)):
            raise ExportError(
                f"--output {cfg.output} exists and is not a previous export (no {EXPORT_SENTINEL} in it); "
                f"--overwrite only replaces exports, refusing to delete it"
            )
    existing = os.path.dirname(output)
    while existing and not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    if existing and not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(f"--output {cfg.output}: directory {existing} is not writable")


def export_hf(cfg: HFExportConfig) -> str:
    """Export a checkpoint to a Hugging Face model directory.

    Args:
        cfg: what to export and where.

    Returns:
        The output directory.

    Raises:
        ExportError: no checkpoint at ``cfg.load``, an unsupported model shape, a missing or
            changed tokenizer file, or ``cfg.output`` exists (without ``overwrite``).
    """
    output = os.path.abspath(cfg.output.rstrip("/") or cfg.output)
    if os.path.lexists(output) and not cfg.overwrite:
        raise ExportError(f"--output {cfg.output} exists (pass --overwrite to replace it)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ExportError("export runs in one process (it loads whole tensors); do not launch it with torchrun")
    if cfg.dtype != "auto" and cfg.dtype not in DTYPES:
        raise ExportError(f"--dtype {cfg.dtype!r}: choose auto, " + ", ".join(DTYPES))
    ckpt_dir, meta = _resolve(cfg.load, cfg.iteration)
    _check_output(cfg, output, ckpt_dir)
    _architecture(meta["model"], ckpt_dir)  # fail before loading tensors
    tensors = load_checkpoint_tensors(ckpt_dir)
    model = build_hf_model(ckpt_dir, meta, tensors, cfg.keep_padded_vocab, cfg.dtype, cfg.extra)

    parent = os.path.dirname(output)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise ExportError(f"--output {cfg.output}: cannot create {parent} ({err.strerror})") from None
    old = f"{output}.old-{os.getpid()}"  # a previous export, removed once the new one is in place
    try:
        with atomic_path(output) as tmp:
            model.save_pretrained(tmp)
            if cfg.tokenizer and isinstance(meta.get("tokenizer"), dict):
                max_len = int(getattr(model.config, "n_positions", 0) or model.config.max_position_embeddings)
                write_tokenizer_files(meta["tokenizer"], tmp, max_len, ckpt_dir)
            with open(os.path.join(tmp, "prealign_meta.json"), "w", encoding="utf-8") as f:
                json.dump(dict(meta, exported_from=os.path.abspath(ckpt_dir)), f, indent=2, sort_keys=True, default=str)
            with open(os.path.join(tmp, EXPORT_SENTINEL), "w", encoding="utf-8") as f:
                f.write("written by tools/export_hf.py; --overwrite may replace this directory\n")
            if os.path.exists(output):
                os.replace(output, old)
    except OSError as err:
        if os.path.exists(old) and not os.path.exists(output):
            os.replace(old, output)
        raise ExportError(f"--output {cfg.output}: cannot write the export ({err.strerror or err})") from None
    shutil.rmtree(old, ignore_errors=True)
    logger.info("exported %s (%s, vocab %d) to %s", ckpt_dir, type(model).__name__, model.config.vocab_size, output)
    return output
