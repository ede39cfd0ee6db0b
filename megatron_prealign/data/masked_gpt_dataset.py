"""``MaskedGPTDataset``: megatron-core's ``GPTDataset`` whose loss mask honours codeswitching.

Input-only codeswitching (PreAlign, Sec. 3.2, Eq. 6) substitutes words of the *input* and must
not train the model to *predict* the substituted subwords. ``tools/preprocess_data.py
--codeswitch`` therefore writes, next to the text dataset ``{prefix}``, a uint8 dataset
``{prefix}_lossmask`` with identical sequence lengths and document indices, 0 at substituted
tokens. This dataset yields exactly GPTDataset's samples (same document, sample and shuffle
indices, same cache files layout) with::

    loss_mask[i] = megatron_loss_mask[i] * stored_mask[token i + 1]

i.e. the label of position ``i`` (token ``i + 1`` of the drawn span) is dropped when that token
was substituted. Megatron's own mask (EOD masking with ``eod_mask_loss``, padding) is kept. A
text dataset without a ``_lossmask`` dataset next to it behaves exactly like ``GPTDataset``
(stored mask all ones), so codeswitched and plain corpora blend freely through
``BlendedMegatronDatasetBuilder``.

Usage (what ``pretrain_prealign.py`` does)::

    config = masked_gpt_dataset_config(tokenizer, seq_length=1024, seed=1234,
                                       blend=(["data/en_cs_text_document", "data/de_text_document"],
                                              [70.0, 30.0]),
                                       split="969,30,1")
    train_ds, valid_ds, test_ds = build_train_valid_test_datasets(
        config, [train_samples, valid_samples, test_samples])

GPTDataset caches the loss mask between samples when ``reset_position_ids``,
``reset_attention_mask`` and ``eod_mask_loss`` are all off and hands out
``cached_loss_mask.clone()``; this class multiplies into a new tensor, so the cached mask is
never modified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.datasets.object_storage_utils import is_object_storage_path
from megatron.core.datasets.utils import Split

from megatron_prealign.data.indexed import (
    LOSS_MASK_SUFFIX,
    IndexedDatasetError,
    check_indexed_dataset,
    check_loss_mask_record,
    check_token_ids,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MaskedGPTDataset",
    "MaskedGPTDatasetConfig",
    "build_train_valid_test_datasets",
    "default_is_built_on_rank",
    "masked_gpt_dataset_config",
]


@dataclass
class MaskedGPTDatasetConfig(GPTDatasetConfig):
    """``GPTDatasetConfig`` plus where the loss masks live. A plain ``GPTDatasetConfig`` works
    too (the defaults below apply)."""

    loss_mask_suffix: str = LOSS_MASK_SUFFIX
    """The loss-mask dataset of text dataset ``{prefix}`` is ``{prefix}{loss_mask_suffix}``."""

    require_loss_mask: bool = False
    """Raise when a text dataset has no loss-mask dataset (default: treat its mask as all ones)."""


class MaskedGPTDataset(GPTDataset):
    """A ``GPTDataset`` whose ``loss_mask`` also drops labels the stored loss mask zeroes.

    Args: as ``GPTDataset`` (built by ``BlendedMegatronDatasetBuilder``).

    Attributes:
        mask_dataset: the ``IndexedDataset`` at ``{dataset_path}_lossmask``, or ``None``.

    Raises:
        IndexedDatasetError: the mask dataset is corrupt, missing while required, or its sequence
            lengths / document indices differ from the text dataset's (one line).
    """

    def __init__(
        self,
        indexed_dataset: IndexedDataset,
        dataset_path: Optional[str],
        indexed_indices: np.ndarray,
        num_samples: Optional[int],
        index_split: Split,
        config: GPTDatasetConfig,
    ) -> None:
        self.mask_dataset: Optional[IndexedDataset] = _open_loss_mask(indexed_dataset, dataset_path, config)
        super().__init__(indexed_dataset, dataset_path, indexed_indices, num_samples, index_split, config)

    @staticmethod
    def build_low_level_dataset(dataset_path: str, config: GPTDatasetConfig) -> IndexedDataset:
        """GPTDataset's ``IndexedDataset``, after validating local files (one-line errors)."""
        if _local_and_checkable(dataset_path, config):
            check_indexed_dataset(dataset_path)
            vocab_size = getattr(getattr(config, "tokenizer", None), "vocab_size", None)
            if vocab_size:
                check_token_ids(dataset_path, int(vocab_size), "training data")
        return GPTDataset.build_low_level_dataset(dataset_path, config)

    def __getitem__(self, idx: Optional[int]) -> Dict[str, torch.Tensor]:
        """GPTDataset's sample; ``loss_mask`` multiplied by the stored mask at label positions."""
        sample = super().__getitem__(idx)
        if self.mask_dataset is None:
            return sample
        span = self._query_mask(0 if idx is None else idx)
        n = sample["loss_mask"].shape[0]
        label_mask = np.ones(n, dtype=np.float32)
        # label i is token i + 1 of the span (with or without the extra token, see GPTDataset)
        shifted = span[1 : n + 1]
        label_mask[: shifted.shape[0]] = shifted != 0
        sample["loss_mask"] = sample["loss_mask"] * torch.from_numpy(label_mask)
        return sample

    def _query_mask(self, idx: int) -> np.ndarray:
        """The stored mask over the same token span as ``_query_document_sample_shuffle_indices``.

        Same sample -> (document, offset) walk as megatron-core 0.16 ``GPTDataset``: the span may
        cover several documents; positions beyond the data (padding) get 1 (padding is masked by
        GPTDataset itself).
        """
        extra = int(self.config.add_extra_token_to_sequence)
        idx = self.shuffle_index[idx]
        doc_beg, off_beg = self.sample_index[idx]
        doc_end, off_end = self.sample_index[idx + 1]
        parts: List[np.ndarray] = []
        for i in range(doc_beg, doc_end + 1):  # the first document from off_beg, the last to off_end
            offset = int(off_beg) if i == doc_beg else 0
            length = int(off_end + extra) - offset if i == doc_end else None
            parts.append(self.mask_dataset.get(self.document_index[i], offset=offset, length=length))
        want = self.config.sequence_length + extra
        have = sum(p.shape[0] for p in parts)
        if have < want:
            parts.append(np.ones(want - have, dtype=np.uint8))
        return np.concatenate(parts)


def _local_and_checkable(dataset_path: Optional[str], config: GPTDatasetConfig) -> bool:
    return (
        dataset_path is not None
        and not is_object_storage_path(dataset_path)
        and not config.fast_cache_load
        and not config.sequences_per_dataset
    )


def _open_loss_mask(
    text: IndexedDataset, dataset_path: Optional[str], config: GPTDatasetConfig
) -> Optional[IndexedDataset]:
    suffix = getattr(config, "loss_mask_suffix", LOSS_MASK_SUFFIX)
    required = getattr(config, "require_loss_mask", False)
    if dataset_path is None:
        return None
    prefix = dataset_path + suffix
    if not IndexedDataset.exists(prefix):
        if required:
            raise IndexedDatasetError(f"{prefix}.idx: no loss-mask dataset for {dataset_path} (require_loss_mask is set)")
        return None
    if is_object_storage_path(prefix):  # cached index, remote .bin: as GPTDataset opens its text
        mask = GPTDataset.build_low_level_dataset(prefix, config)
    else:
        header = check_indexed_dataset(prefix)
        check_loss_mask_record(dataset_path)
        if not np.issubdtype(header.dtype, np.integer):
            raise IndexedDatasetError(
                f"{prefix}.idx: loss mask dtype is {np.dtype(header.dtype).name}, not an integer type"
            )
        mask = IndexedDataset(prefix, multimodal=header.multimodal, mmap=config.mmap_bin_files)
    text_lengths, mask_lengths = text.sequence_lengths, mask.sequence_lengths
    if text_lengths.shape != mask_lengths.shape:
        raise IndexedDatasetError(
            f"{prefix}.idx: loss mask has {mask_lengths.shape[0]} sequences, its text dataset "
            f"{dataset_path} has {text_lengths.shape[0]}"
        )
    if not np.array_equal(text_lengths, mask_lengths):
        bad = int(np.flatnonzero(text_lengths != mask_lengths)[0])
        raise IndexedDatasetError(
            f"{prefix}.idx: sequence {bad} has {mask_lengths[bad]} mask values but {text_lengths[bad]} tokens "
            f"in {dataset_path}"
        )
    if not np.array_equal(text.document_indices, mask.document_indices):
        raise IndexedDatasetError(f"{prefix}.idx: document indices differ from those of {dataset_path}")
    return mask


# ---------------------------------------------------------------------------------------------
# Building, the Megatron-LM way (pretrain_gpt.py: core_gpt_dataset_config_from_args + builder).


def masked_gpt_dataset_config(
    tokenizer,
    seq_length: int,
    seed: int,
    *,
    blend: Optional[Tuple[List[str], Optional[List[float]]]] = None,
    split: Optional[str] = "969,30,1",
    blend_per_split: Optional[List[Optional[Tuple[List[str], Optional[List[float]]]]]] = None,
    data_cache_path: Optional[str] = None,
    reset_position_ids: bool = False,
    reset_attention_mask: bool = False,
    eod_mask_loss: bool = False,
    create_attention_mask: bool = True,
    mmap_bin_files: bool = True,
    num_dataset_builder_threads: int = 1,
    require_loss_mask: bool = False,
    **extra,
) -> MaskedGPTDatasetConfig:
    """A :class:`MaskedGPTDatasetConfig` from Megatron-LM's data flags.

    Args:
        tokenizer: the tokenizer (``vocab_size``, ``eod``, ``pad``, ``unique_identifiers``).
        seq_length: ``--seq-length``.
        seed: ``--seed`` (dataset shuffling).
        blend: ``(prefixes, weights or None)``, megatron-core's form of ``--data-path``
            (:class:`~megatron_prealign.training.config.DataConfig` holds it so).
        split: ``--split`` (used with ``blend``).
        blend_per_split: ``[train, valid, test]`` blends (``--train-data-path`` etc.), instead
            of ``blend`` + ``split``.
        data_cache_path: ``--data-cache-path``.
        reset_position_ids, reset_attention_mask, eod_mask_loss, create_attention_mask:
            Megatron's flags of the same names (``create_attention_mask`` =
            ``--create-attention-mask-in-dataloader``).
        mmap_bin_files: ``not --no-mmap-bin-files``.
        num_dataset_builder_threads: ``--num-dataset-builder-threads``.
        require_loss_mask: fail when a prefix has no ``_lossmask`` dataset.
        **extra: other ``GPTDatasetConfig`` fields.
    """
    if blend is not None and blend_per_split is not None:
        raise ValueError("--data-path and --train/valid/test-data-path are mutually exclusive")
    return MaskedGPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=blend,
        blend_per_split=blend_per_split,
        split=split if blend is not None else None,
        path_to_cache=data_cache_path,
        mmap_bin_files=mmap_bin_files,
        tokenizer=tokenizer,
        reset_position_ids=reset_position_ids,
        reset_attention_mask=reset_attention_mask,
        eod_mask_loss=eod_mask_loss,
        create_attention_mask=create_attention_mask,
        num_dataset_builder_threads=num_dataset_builder_threads,
        require_loss_mask=require_loss_mask,
        **extra,
    )


def default_is_built_on_rank() -> bool:
    """Megatron-LM's rule: build on TP rank 0 of the first and last pipeline stages
    (every rank when model parallelism is not initialised)."""
    from megatron.core import parallel_state

    if not torch.distributed.is_initialized() or not parallel_state.model_parallel_is_initialized():
        return True
    first = parallel_state.is_pipeline_first_stage(ignore_virtual=True)
    last = parallel_state.is_pipeline_last_stage(ignore_virtual=True)
    return (first or last) and parallel_state.get_tensor_model_parallel_rank() == 0


def build_train_valid_test_datasets(
    config: GPTDatasetConfig,
    train_valid_test_num_samples: Sequence[Optional[int]],
    is_built_on_rank: Optional[Callable[[], bool]] = None,
) -> Tuple[Optional[torch.utils.data.Dataset], ...]:
    """Build the train/valid/test datasets through ``BlendedMegatronDatasetBuilder``.

    Each prefix of the blend becomes a :class:`MaskedGPTDataset` (its ``_lossmask`` used when
    present); several prefixes are blended by megatron-core's ``BlendedDataset``.

    Args:
        config: from :func:`masked_gpt_dataset_config` (or any ``GPTDatasetConfig``).
        train_valid_test_num_samples: samples per split (``None``: one epoch).
        is_built_on_rank: defaults to :func:`default_is_built_on_rank`.

    Returns:
        ``(train, valid, test)``; an entry is ``None`` for an empty split or on ranks that do
        not build datasets.
    """
    builder = BlendedMegatronDatasetBuilder(
        MaskedGPTDataset,
        list(train_valid_test_num_samples),
        is_built_on_rank or default_is_built_on_rank,
        config,
    )
    return tuple(builder.build())
