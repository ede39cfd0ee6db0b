"""Data: reading corpora, binarizing (+ codeswitching), and the masked GPT dataset.

* :mod:`.readers` — streaming JSONL[.gz] / CulturaX parquet / text readers.
* :mod:`.indexed` — Megatron ``.bin/.idx`` naming, validated opening, all-or-nothing writing.
* :mod:`.preprocess_data` — the binarization pass behind ``tools/preprocess_data.py``.
* :mod:`.codeswitch` — input-only codeswitching (C++ with a Python reference twin).
* :mod:`.en_clone` — the En-Clone twin of a ``.bin/.idx`` dataset.
* :mod:`.masked_gpt_dataset` — ``MaskedGPTDataset``: megatron-core's ``GPTDataset`` whose
  ``loss_mask`` also honours the codeswitching mask; ``build_train_valid_test_datasets``.

Importing this package does not import megatron-core (4 s); the modules that need it import it.
"""

_LAZY = {
    "MaskedGPTDataset": "megatron_prealign.data.masked_gpt_dataset",
    "MaskedGPTDatasetConfig": "megatron_prealign.data.masked_gpt_dataset",
    "build_train_valid_test_datasets": "megatron_prealign.data.masked_gpt_dataset",
    "preprocess": "megatron_prealign.data.preprocess_data",
    "PreprocessConfig": "megatron_prealign.data.preprocess_data",
    "CorpusReader": "megatron_prealign.data.readers",
    "ReaderConfig": "megatron_prealign.data.readers",
    "open_indexed_dataset": "megatron_prealign.data.indexed",
    "check_indexed_dataset": "megatron_prealign.data.indexed",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
