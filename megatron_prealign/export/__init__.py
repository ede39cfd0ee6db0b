"""Exporting trained checkpoints to other formats (Hugging Face ``transformers``)."""

from megatron_prealign.export.hf import (
    EXPORT_SENTINEL,
    ExportError,
    HFExportConfig,
    export_hf,
    load_checkpoint_tensors,
    split_qkv,
)

__all__ = ["EXPORT_SENTINEL", "ExportError", "HFExportConfig", "export_hf", "load_checkpoint_tensors", "split_qkv"]
