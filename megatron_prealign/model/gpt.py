"""Building Megatron-Core's GPTModel for PreAlign (GPT-2 style by default).

The model is Megatron-Core's own ``GPTModel``; this module only chooses the layer spec
(TransformerEngine, Megatron-LM's default, when importable and on CUDA, else the local spec with
torch norms, with one log line) and maps a small typed config onto ``TransformerConfig`` under
the current parallel state. Pre-alignment runs on the same spec as pretraining (it uses plain
causal attention), so the choice does not depend on the alignment mode.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_prealign.platform import device
from megatron_prealign.platform.compat import get_num_layers_to_build

logger = logging.getLogger(__name__)


@dataclass
class GPTModelConfig:
    """Shape and numerics of a GPT model; parallel sizes come from ``parallel_state``.

    Fields that are ``pretrain_prealign.py`` flags name them in their metadata (Megatron-LM's).

    Raises:
        ValueError: contradicting numerics, query groups or recompute settings (one line).
    """

    num_layers: int = field(metadata={"flag": "--num-layers"})
    """Number of transformer layers; required (or --use-checkpoint-args)."""
    hidden_size: int = field(metadata={"flag": "--hidden-size"})
    """Hidden size; required (or --use-checkpoint-args)."""
    num_attention_heads: int = field(metadata={"flag": "--num-attention-heads"})
    """Attention heads (divisible by the TP size); required (or --use-checkpoint-args)."""
    vocab_size: int
    """Padded vocabulary size (a multiple of the TP size)."""
    max_sequence_length: int = field(metadata={"flag": "--max-position-embeddings"})
    """Longest sequence the position embedding covers (default --seq-length)."""
    ffn_hidden_size: Optional[int] = field(default=None, metadata={"flag": "--ffn-hidden-size"})
    """MLP hidden size; default 4 x hidden size, with --swiglu int(8 x hidden / 3 / 64) x 64 (Megatron-LM)."""
    position_embedding_type: str = field(default="learned_absolute", metadata={
        "flag": "--position-embedding-type", "choices": ("learned_absolute", "rope")})
    """learned_absolute (GPT-2) or rope (Llama-style)."""
    normalization: str = field(default="LayerNorm", metadata={"flag": "--normalization",
                                                              "choices": ("LayerNorm", "RMSNorm")})
    """LayerNorm (GPT-2) or RMSNorm."""
    untie_embeddings_and_output_weights: bool = field(default=False, metadata={
        "flag": "--untie-embeddings-and-output-weights"})
    """Separate input embedding and LM head (GPT-2 ties them)."""
    hidden_dropout: float = field(default=0.1, metadata={"flag": "--hidden-dropout"})
    """Dropout after attention and MLP."""
    attention_dropout: float = field(default=0.1, metadata={"flag": "--attention-dropout"})
    """Dropout on attention probabilities."""
    init_method_std: float = field(default=0.02, metadata={"flag": "--init-method-std"})
    """Std of the normal weight initialisation."""
    bf16: bool = field(default=False, metadata={"flag": "--bf16"})
    """bfloat16 parameters and compute (GPU)."""
    fp16: bool = field(default=False, metadata={"flag": "--fp16"})
    """float16 parameters and compute with loss scaling (GPU)."""
    swiglu: bool = field(default=False, metadata={"flag": "--swiglu"})
    """Gated SiLU MLP (Llama-style), as Megatron-LM."""
    num_query_groups: Optional[int] = field(default=None, metadata={"flag": "--num-query-groups", "default": 1})
    """Key/value head groups with --group-query-attention (Megatron-LM default 1); none = one per head."""
    recompute_granularity: Optional[str] = field(default=None, metadata={
        "flag": "--recompute-granularity", "choices": ("full", "selective")})
    """full: recompute whole layers (not during pre-alignment); selective: core attention."""
    recompute_method: Optional[str] = field(default=None, metadata={"flag": "--recompute-method",
                                                                     "choices": ("uniform", "block")})
    """With --recompute-granularity full: uniform chunks or the first N layers per stage."""
    recompute_num_layers: Optional[int] = field(default=None, metadata={"flag": "--recompute-num-layers",
                                                                        "default": 1})
    """Layers per recompute chunk (uniform) or recomputed layers per stage (block), with full recompute."""
    sequence_parallel: bool = field(default=False, metadata={"flag": "--sequence-parallel"})
    """Megatron sequence parallelism; needs TP > 1."""
    use_cpu_initialization: bool = True
    """Initialise weights on the CPU with one seed, so TP shards equal slices of TP=1 weights."""
    transformer_impl: str = field(default="transformer_engine", metadata={
        "flag": "--transformer-impl", "choices": ("auto", "local", "transformer_engine")})
    """transformer_engine (Megatron-LM's default; falls back to the local spec with one log line
    when TransformerEngine or CUDA is missing), local, or auto (the same as transformer_engine)."""

    def __post_init__(self) -> None:
        if self.bf16 and self.fp16:
            raise ValueError("--bf16 and --fp16 are mutually exclusive")
        groups = self.num_query_groups
        if groups is not None and (groups < 1 or self.num_attention_heads % groups):
            raise ValueError(f"--num-query-groups {groups} must divide --num-attention-heads {self.num_attention_heads}")
        if self.recompute_granularity == "full":
            if self.recompute_method is None:
                raise ValueError("--recompute-granularity full needs --recompute-method uniform or block")
            if self.recompute_num_layers is None or self.recompute_num_layers < 1:
                raise ValueError("--recompute-num-layers must be >= 1")
        elif self.recompute_method is not None:
            raise ValueError(f"--recompute-method {self.recompute_method} needs --recompute-granularity full")

    def to_dict(self) -> dict:
        """JSON-serialisable form, stored next to checkpoints."""
        return dataclasses.asdict(self)


def transformer_engine_available() -> bool:
    """Whether TransformerEngine's PyTorch extension can be used here (needs CUDA)."""
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine.pytorch  # noqa: F401
    except Exception:  # ImportError, or a broken build raising at import
        return False
    return True


def apex_available() -> bool:
    """Whether NVIDIA apex's fused layer norm is importable."""
    try:
        from apex.normalization import FusedLayerNorm  # noqa: F401
    except Exception:
        return False
    return True


def resolve_transformer_impl(requested: str) -> str:
    """``transformer_engine`` or ``local``: what ``requested`` means on this machine.

    ``transformer_engine`` and ``auto`` fall back to ``local`` when TransformerEngine cannot be
    used (not importable, or no CUDA); :func:`layer_spec_for` logs which spec it builds and why.

    Raises:
        ValueError: an unknown name.
    """
    if requested not in ("auto", "local", "transformer_engine"):
        raise ValueError(f"transformer_impl must be 'auto', 'local' or 'transformer_engine', not {requested!r}")
    if requested == "local":
        return "local"
    return "transformer_engine" if transformer_engine_available() else "local"


def make_transformer_config(cfg: GPTModelConfig) -> TransformerConfig:
    """Map :class:`GPTModelConfig` onto Megatron's ``TransformerConfig`` for this rank.

    Megatron-LM's kernel fusions are on with the TransformerEngine spec (a CUDA machine) and off
    on the local fallback, whose CPU path has no fused kernels.
    """
    fused = resolve_transformer_impl(cfg.transformer_impl) == "transformer_engine"
    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    dtype = torch.bfloat16 if cfg.bf16 else torch.float16 if cfg.fp16 else torch.float32
    extra = {}
    if cfg.swiglu:
        extra.update(gated_linear_unit=True, activation_func=torch.nn.functional.silu)
    # Fields named as in TransformerConfig mean the same there and pass as they are;
    # ``transformer_impl`` (ours: which layer spec to build) is not TransformerConfig's.
    same = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TransformerConfig)
            if f.name in GPTModelConfig.__dataclass_fields__ and f.name != "transformer_impl"}
    return TransformerConfig(**{
        **same, **extra,
        "tensor_model_parallel_size": tp, "pipeline_model_parallel_size": pp,
        "sequence_parallel": cfg.sequence_parallel and tp > 1, "params_dtype": dtype, "pipeline_dtype": dtype,
        "bias_activation_fusion": fused, "masked_softmax_fusion": fused, "bias_dropout_fusion": fused,
        "persist_layer_norm": False, "apply_rope_fusion": False, "gradient_accumulation_fusion": False,
    })


def layer_spec_for(cfg: GPTModelConfig, config: TransformerConfig) -> ModuleSpec | TransformerBlockSubmodules:
    """Choose the transformer layer spec and log which one, once."""
    impl = resolve_transformer_impl(cfg.transformer_impl)
    if impl == "transformer_engine":
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        logger.info("layer spec: TransformerEngine (fused kernels)")
        return get_gpt_layer_with_transformer_engine_spec(normalization=cfg.normalization)

    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    why = ""
    if cfg.transformer_impl != "local":
        why = f" (transformer_impl {cfg.transformer_impl}: " + (
            "no CUDA device)" if not torch.cuda.is_available() else "TransformerEngine is not importable)")

    spec = get_gpt_layer_local_spec(normalization=cfg.normalization)
    if apex_available():
        logger.info("layer spec: Megatron-Core local spec with apex fused norms%s", why)
        return spec
    # Without apex, Megatron's torch norm rejects sequence parallelism; ours supports it.
    from megatron_prealign.model.norm import SequenceParallelTorchNorm

    spec.submodules.input_layernorm = SequenceParallelTorchNorm
    spec.submodules.pre_mlp_layernorm = SequenceParallelTorchNorm
    logger.info("layer spec: Megatron-Core local spec with torch norms, no apex%s", why)
    num_layers = get_num_layers_to_build(config)
    return TransformerBlockSubmodules(layer_specs=[spec] * num_layers, layer_norm=SequenceParallelTorchNorm)


def build_gpt_model(
    cfg: GPTModelConfig,
    pre_process: Optional[bool] = None,
    post_process: Optional[bool] = None,
) -> GPTModel:
    """Build this rank's part of the GPT model (its TP shard of its PP stage).

    The process must be set up (:func:`megatron_prealign.platform.initialize`: parallel state,
    then the RNG seeded with ``model_parallel_cuda_manual_seed``; Megatron's usual order).

    Args:
        cfg: model shape and numerics.
        pre_process: whether this stage holds the input embedding (default: first PP stage).
        post_process: whether this stage holds the LM head (default: last PP stage).
    """
    config = make_transformer_config(cfg)
    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage()
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage()
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec_for(cfg, config),
        vocab_size=cfg.vocab_size,
        max_sequence_length=cfg.max_sequence_length,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=not cfg.untie_embeddings_and_output_weights,
        position_embedding_type=cfg.position_embedding_type,
    )
    return model.to(device())
