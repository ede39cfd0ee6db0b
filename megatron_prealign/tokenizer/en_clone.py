"""En-Clone (paper Sec. 4.1.1): a synthetic language that clones every English token one-to-one.

With a base vocabulary of size V, the En-Clone tokenizer has vocabulary 2V: English token ``i``
keeps id ``i``; its clone is ``i + V``. Special tokens (EOD, pad, control pieces) are shared:
they keep their ids in both languages, so documents end with the same EOD and megatron-core's
dataset needs no change. Ids ``s + V`` for special ``s`` are never produced.

The dataset pass (an English ``.bin/.idx`` into its En-Clone twin) is
``megatron_prealign.data.en_clone.clone_indexed_dataset``; the alignment table mapping every
English word to its clone is built by ``megatron_prealign.alignment.build.build_en_clone_table``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Sequence

import numpy as np

from megatron_prealign.tokenizer.base import PreAlignTokenizer, ids_list

__all__ = ["EN_CLONE_LANGUAGE", "EnCloneTokenizer", "clone_dtype"]

#: Language code of the clone in alignment tables and codeswitch configs.
EN_CLONE_LANGUAGE = "en_clone"


class EnCloneTokenizer(PreAlignTokenizer):
    """Doubles a base tokenizer's vocabulary: ids ``[0, V)`` English, ``[V, 2V)`` En-Clone.

    Args:
        base (PreAlignTokenizer): the English tokenizer (vocabulary V).

    ``tokenize``/``encode_word`` produce English ids (the base tokenizer's);
    ``tokenize_clone``/``encode_word_clone`` produce clone ids; ``detokenize`` accepts both
    (a clone token reads as its English twin; :meth:`is_clone` tells them apart).
    """

    tokenizer_type = "EnCloneTokenizer"

    def __init__(self, base: PreAlignTokenizer) -> None:
        if isinstance(base, EnCloneTokenizer):
            raise ValueError("EnCloneTokenizer: the base tokenizer is already an En-Clone tokenizer")
        super().__init__(*base.unique_identifiers.get("tokenizer_path", []), base=base.unique_description)
        self.base = base
        self.base_vocab_size = int(base.vocab_size)
        self._vocab_size = 2 * self.base_vocab_size
        self._eod = base.eod
        self._pad = base.pad
        self._bos = base.bos
        self._special_ids = base.special_ids
        # lookup table: base id -> clone id (specials map to themselves)
        self._clone_lut = np.arange(self.base_vocab_size, dtype=np.int64) + self.base_vocab_size
        specials = [i for i in self._special_ids if 0 <= i < self.base_vocab_size]
        self._clone_lut[specials] = specials

    # -------------------------------------------------------------- id mapping
    def clone_ids(self, ids: np.ndarray) -> np.ndarray:
        """English ids -> En-Clone ids (specials unchanged), vectorised.

        Args:
            ids (np.ndarray): integer array of base ids in ``[0, V)``.

        Returns:
            np.ndarray: same shape, dtype :func:`clone_dtype` of ``2V`` unless ``ids`` already
            has a wide enough integer dtype (then that dtype).

        Raises:
            ValueError: an id outside ``[0, V)``.
        """
        arr = np.asarray(ids)
        if arr.size and (arr.min() < 0 or arr.max() >= self.base_vocab_size):
            bad = arr[(arr < 0) | (arr >= self.base_vocab_size)].flat[0]
            raise ValueError(f"clone_ids: id {int(bad)} outside the base vocabulary [0, {self.base_vocab_size})")
        out_dtype = clone_dtype(self.vocab_size)
        if np.issubdtype(arr.dtype, np.integer) and np.iinfo(arr.dtype).max >= self.vocab_size - 1:
            out_dtype = arr.dtype
        return self._clone_lut[arr].astype(out_dtype, copy=False)

    def is_clone(self, ids: Iterable[int]) -> np.ndarray:
        """Boolean mask: which ids are En-Clone tokens (``>= V``)."""
        return np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids) >= self.base_vocab_size

    def to_base(self, ids: Iterable[int]) -> List[int]:
        """Map any ids (English or clone) to their English ids."""
        v = self.base_vocab_size
        return [i - v if i >= v else i for i in ids_list(ids)]

    # -------------------------------------------------------------- tokenizer surface
    def tokenize(self, text: str) -> List[int]:
        """English ids (the base tokenizer's)."""
        return self.base.tokenize(text)

    def clone_id_list(self, ids: Sequence[int]) -> List[int]:
        """En-Clone ids of the English ids ``ids`` (specials unchanged), as Python ints."""
        return ids_list(self.clone_ids(np.asarray(ids, dtype=np.int64)))

    def tokenize_clone(self, text: str) -> List[int]:
        """En-Clone ids of ``text``."""
        return self.clone_id_list(self.base.tokenize(text))

    def encode_word(self, word: str) -> List[int]:
        """English word-initial ids (as the base tokenizer)."""
        return self.base.encode_word(word)

    def encode_word_clone(self, word: str) -> List[int]:
        """En-Clone word-initial ids."""
        return self.clone_id_list(self.base.encode_word(word))

    def detokenize(self, ids: Iterable[int]) -> str:
        """Text of English and/or clone ids (a clone token reads as its English twin)."""
        return self.base.detokenize(self.to_base(ids))

    def id_to_token(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id >= self.base_vocab_size:
            return "[clone]" + self.base.id_to_token(token_id - self.base_vocab_size)
        return self.base.id_to_token(token_id)

    def word_start_mask(self) -> np.ndarray:
        """The base mask, doubled: a clone token starts a word iff its English twin does."""
        if self._word_start_mask is None:
            base = self.base.word_start_mask()
            mask = np.concatenate([base, base])
            mask.setflags(write=False)
            self._word_start_mask = mask
        return self._word_start_mask

    def describe(self) -> Dict[str, Any]:
        return {
            "type": self.tokenizer_type,
            "base": self.base.describe(),
            "vocab_size": self.vocab_size,
            "eod": self.eod,
            "pad": self.pad,
        }


def clone_dtype(vocab_size: int) -> type:
    """Megatron's token dtype for a vocabulary (uint16 below 65500 ids, else int32)."""
    return np.uint16 if vocab_size < 65500 else np.int32
