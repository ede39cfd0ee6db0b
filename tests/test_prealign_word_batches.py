"""Pre-alignment microbatches (one word per row) and drawing them from an alignment table."""

from __future__ import annotations

import pytest
import torch

from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation
from megatron_prealign.model.word_batches import WordBatchConfig, WordBatchSampler, pad_word_batch, word_rows


def make_table(num_words: int = 20, langs=("de", "zh"), per_lang: int = 3) -> AlignmentTable:
    """Entry i: source ids [10*i+1] (+1 token when i is odd); translations with distinct ids.

    Entries whose index is a multiple of 7 have no translation (never drawable).
    """
    entries = []
    for i in range(num_words):
        ids = [1000 + 10 * i] + ([1001 + 10 * i] if i % 2 else [])
        translations = {}
        if i % 7:
            for li, lang in enumerate(langs):
                translations[lang] = [
                    Translation(f"{lang}{i}_{k}", [5000 + 100 * i + 10 * li + k] * (1 + k % 2)) for k in range(per_lang)
                ]
        entries.append(AlignmentEntry(word=f"w{i}", count=100 - i, ids=ids, translations=translations))
    return AlignmentTable(languages=list(langs), entries=entries, vocab_size=50000, tokenizer={"type": "test"})


def words_of(batch):
    """{row: (label, token tuple)} read back from a batch (padding rows left out)."""
    out = {}
    for row in range(batch["tokens"].shape[0]):
        n = int(batch["lengths"][row])
        if n:
            out[row] = (int(batch["word_labels"][row]), tuple(batch["tokens"][row, :n].tolist()))
    return out


def test_word_rows_layout_by_hand():
    batch = word_rows([[1, 2, 3], [4], [5, 6], [7, 8, 9, 10]], [0, 0, 1, 1], pad_id=99)
    assert batch["tokens"].tolist() == [[1, 2, 3, 99], [4, 99, 99, 99], [5, 6, 99, 99], [7, 8, 9, 10]]
    assert batch["lengths"].tolist() == [3, 1, 2, 4]
    assert batch["word_labels"].tolist() == [0, 0, 1, 1]
    assert batch["kind"] == "prealign"
    wide = word_rows([[1, 2], [3]], [5, 5], num_rows=3, length=4)
    assert wide["tokens"].tolist() == [[1, 2, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0]]
    assert wide["lengths"].tolist() == [2, 1, 0] and wide["word_labels"].tolist() == [5, 5, -1]
    padded = pad_word_batch(word_rows([[1, 2], [3]], [5, 5]), 3, 4)
    for key in ("tokens", "lengths", "word_labels"):
        assert torch.equal(padded[key], wide[key])


def test_word_rows_bad_input():
    with pytest.raises(ValueError, match="no tokens"):
        word_rows([[1], []], [0, 0])
    with pytest.raises(ValueError, match="labels"):
        word_rows([[1], [2]], [0])
    with pytest.raises(ValueError, match="do not fit 1x4"):
        word_rows([[1], [2]], [0, 0], num_rows=1, length=4)
    with pytest.raises(ValueError, match="cannot shrink"):
        pad_word_batch(word_rows([[1, 2]], [0]), 1, 1)


def test_sampler_is_deterministic_and_restartable():
    cfg = WordBatchConfig(words_per_microbatch=3, micro_batch_size=2, seq_length=32, max_translations_per_word=2, seed=7)
    a = WordBatchSampler(make_table(), cfg, dp_rank=1, dp_size=2)
    b = WordBatchSampler(make_table(), cfg, dp_rank=1, dp_size=2)
    for index in (0, 5, 13):
        x, y = a.microbatch(index), b.microbatch(index)
        for key in ("tokens", "lengths", "word_labels"):
            assert torch.equal(x[key], y[key])
    other_seed = WordBatchSampler(make_table(), WordBatchConfig(**{**cfg.__dict__, "seed": 8}), dp_rank=1, dp_size=2)
    assert any(a.draw(i) != other_seed.draw(i) for i in range(4))


def test_dp_ranks_draw_disjoint_words_and_an_epoch_covers_the_table():
    table = make_table()
    cfg = WordBatchConfig(words_per_microbatch=2, micro_batch_size=2, seq_length=32)
    ranks = [WordBatchSampler(table, cfg, dp_rank=r, dp_size=2) for r in range(2)]
    eligible = [i for i in range(len(table.entries)) if i % 7]
    assert ranks[0].num_eligible == len(eligible)
    drawn = []
    per_epoch_steps = len(eligible) // 4  # 2 ranks x 2 words per step
    for step in range(per_epoch_steps):
        d0, d1 = ranks[0].draw(step), ranks[1].draw(step)
        assert not set(d0) & set(d1)
        drawn += d0 + d1
    assert len(set(drawn)) == len(drawn)
    assert set(drawn) <= set(eligible)  # words without translations are never drawn


def test_groups_hold_source_and_capped_translations():
    table = make_table(per_lang=3)
    cfg = WordBatchConfig(words_per_microbatch=4, micro_batch_size=4, seq_length=64, max_translations_per_word=2)
    sampler = WordBatchSampler(table, cfg)
    batch = sampler.microbatch(3)
    assert batch["word_labels"].shape == (12,) == (cfg.max_words,)  # every drawn word has 2+ translations
    assert int(batch["lengths"].max()) == batch["tokens"].shape[1]  # as long as its longest word
    words = words_of(batch)
    by_label = {}
    for slot in sorted(words):
        label, ids = words[slot]
        by_label.setdefault(label, []).append(ids)
    assert sorted(by_label) == sorted(sampler.draw(3))
    for label, rows in by_label.items():
        entry = table.entries[label]
        assert rows[0] == tuple(entry.ids)  # the source word first
        allowed = {tuple(t.ids) for ts in entry.translations.values() for t in ts}
        assert len(rows) == 3 and set(rows[1:]) <= allowed and len(set(rows[1:])) == 2


def test_language_subset_and_unknown_language():
    table = make_table()
    cfg = WordBatchConfig(words_per_microbatch=3, micro_batch_size=2, seq_length=32, max_translations_per_word=10,
                          languages=["zh"])
    batch = WordBatchSampler(table, cfg).microbatch(0)
    zh_ids = {tuple(t.ids) for e in table.entries for t in e.translations.get("zh", [])}
    src_ids = {tuple(e.ids) for e in table.entries}
    assert all(ids in zh_ids | src_ids for _, ids in words_of(batch).values())
    with pytest.raises(ValueError, match="not in the alignment table"):
        WordBatchSampler(table, WordBatchConfig(3, 2, 32, languages=["fr"]))


def test_errors_when_no_positive_pair_is_possible():
    table = make_table()
    no_translations = AlignmentTable(["de"], [AlignmentEntry("a", 1, [1], {})], 10, {})
    with pytest.raises(ValueError, match="no positive pair possible"):
        WordBatchSampler(no_translations, WordBatchConfig(2, 1, 8))
    # --seq-length 1: only one-token words are kept, and each group still has a pair
    tiny = WordBatchSampler(table, WordBatchConfig(words_per_microbatch=1, micro_batch_size=1, seq_length=1))
    for index in range(10):
        batch = tiny.microbatch(index)
        assert batch["tokens"].shape[1] == 1 and batch["tokens"].shape[0] >= 2
