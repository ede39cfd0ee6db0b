"""Tiny generated inputs for the training tests: Megatron .bin/.idx datasets and alignment tables.

Datasets are written with megatron-core's ``IndexedDatasetBuilder``; token ids suit
``--tokenizer-type NullTokenizer --vocab-size V`` (ids ``0..V-1``, EOD = ``V``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def write_lm_dataset(prefix: str, vocab: int, num_docs: int, seed: int = 0, low: int = 0,
                     high: Optional[int] = None, mask_every: int = 0) -> None:
    """Write ``{prefix}.bin/.idx`` with learnable documents (ids walk upwards by 1-4 in [low, high)).

    With ``mask_every > 0`` also write ``{prefix}_lossmask`` (uint8, same lengths) with a 0 at
    every ``mask_every``-th token of each document.
    """
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    high = vocab if high is None else high
    rng = np.random.default_rng(seed)
    text = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    mask = IndexedDatasetBuilder(prefix + "_lossmask.bin", dtype=np.uint8) if mask_every else None
    for _ in range(num_docs):
        n = int(rng.integers(20, 120))
        ids = low + (np.cumsum(rng.integers(1, 5, size=n)) % (high - low))
        ids = np.append(ids, vocab)  # EOD
        text.add_document(ids.astype(np.uint16), [ids.size])
        if mask is not None:
            m = np.ones(ids.size, dtype=np.uint8)
            m[mask_every - 1::mask_every] = 0
            mask.add_document(m, [ids.size])
    text.finalize(prefix + ".idx")
    if mask is not None:
        mask.finalize(prefix + "_lossmask.idx")


def write_dataset(prefix: str, docs, dtype=np.uint16) -> str:
    """Write ``{prefix}.bin/.idx`` holding ``docs`` (one document each, given token ids); returns ``prefix``."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for d in docs:
        builder.add_document(np.asarray(d), [len(d)])
    builder.finalize(prefix + ".idx")
    return prefix


def write_table(path: str, tokenizer, num_words: int, offset: int, language: str = "xx",
                word_len: int = 1) -> None:
    """An alignment table: source word ``i`` (ids ``i, i+1, ...``, ``word_len`` of them)
    translates to the same ids plus ``offset``. Ids are not checked here (tests need bad ones)."""
    from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation

    entries = []
    for i in range(num_words):
        ids = [i + k for k in range(word_len)]
        entries.append(AlignmentEntry(word=f"w{i}", count=100 - i, ids=ids,
                                      translations={language: [Translation(f"c{i}", [x + offset for x in ids])]}))
    table = AlignmentTable(languages=[language], entries=entries, vocab_size=tokenizer.vocab_size,
                           tokenizer=tokenizer.describe())
    table.save(path)
