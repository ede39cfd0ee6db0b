"""Megatron tokenizer types loaded offline, word-start flags, and the En-Clone wrapper.

* :func:`build_tokenizer`: Megatron-LM's ``--tokenizer-type`` names, local files only (the
  flags are in :mod:`megatron_prealign.cli.tokenizer`).
* :class:`PreAlignTokenizer`: the interface (``vocab_size``, ``eod``, ``pad``, ``tokenize``,
  ``detokenize``, ``word_start_mask()``, ``encode_word()``, ``describe()``); usable as
  megatron-core's ``GPTDatasetConfig.tokenizer``. The word-start rule is documented in
  :mod:`megatron_prealign.tokenizer.base`.
* :class:`EnCloneTokenizer`: the synthetic En-Clone language (vocabulary 2V).
* :func:`train_byte_level_bpe`: train a GPT-2-style tokenizer on local text.
"""

from megatron_prealign.tokenizer.base import PreAlignTokenizer, same_tokenizer
from megatron_prealign.tokenizer.en_clone import EN_CLONE_LANGUAGE, EnCloneTokenizer
from megatron_prealign.tokenizer.tokenizer import (
    TOKENIZER_TYPES,
    GPT2BPETokenizer,
    GPTSentencePieceTokenizer,
    HuggingFaceTokenizer,
    NullTokenizer,
    SentencePieceTokenizer,
    build_tokenizer,
)
from megatron_prealign.tokenizer.train import EOD_TOKEN, PAD_TOKEN, train_byte_level_bpe

__all__ = [
    "build_tokenizer",
    "PreAlignTokenizer",
    "same_tokenizer",
    "EnCloneTokenizer",
    "EN_CLONE_LANGUAGE",
    "TOKENIZER_TYPES",
    "GPT2BPETokenizer",
    "GPTSentencePieceTokenizer",
    "HuggingFaceTokenizer",
    "NullTokenizer",
    "SentencePieceTokenizer",
    "EOD_TOKEN",
    "PAD_TOKEN",
    "train_byte_level_bpe",
]
