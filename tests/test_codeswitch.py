"""Codeswitching (megatron_prealign.data.codeswitch + csrc/codeswitch.cpp).

The C++ pass is checked byte for byte against the pure-Python reference, and both against
hand-computed cases, a published splitmix64 value, statistics, and megatron-core's own
IndexedDatasetBuilder (input) / IndexedDataset (reading the outputs).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation
from megatron_prealign.data.codeswitch import CodeswitchConfig, Codeswitcher, codeswitch_dataset
from megatron_prealign.data.codeswitch_reference import _mix64, reference_codeswitch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_table(words, languages=None, vocab_size=1000, path=None):
    """words: list of (ids, {lang: [ids, ...]})."""
    entries = [
        AlignmentEntry(
            word=f"w{i}", count=1, ids=list(ids),
            translations={lang: [Translation(f"t{i}{lang}{k}", list(t)) for k, t in enumerate(ts)] for lang, ts in tr.items()},
        )
        for i, (ids, tr) in enumerate(words)
    ]
    langs = languages if languages is not None else sorted({l for _, tr in words for l in tr})
    table = AlignmentTable(languages=list(langs), entries=entries, vocab_size=vocab_size, tokenizer={})
    table.path = path
    return table


def both(tokens, doc, table, ws, cfg, special=()):
    """Run C++ and the reference; assert byte equality; return the C++ result."""
    got = Codeswitcher(table, ws, cfg, special).apply(np.asarray(tokens, np.int32), doc)
    ref = reference_codeswitch(np.asarray(tokens, np.int32), doc, table, ws, cfg, special)
    assert got[0].dtype == np.int32 and got[1].dtype == np.uint8
    assert got[0].tobytes() == ref[0].tobytes() and got[1].tobytes() == ref[1].tobytes()
    return got[0].tolist(), got[1].tolist()


# ------------------------------------------------------------------------------- hand cases
# vocab: 0 <eod> (special), 1 Ġthe, 2 Ġbank, 3 ing, 4 Ġre, 5 ad, 6 ĠBa, 7 nk, 8 ĠUfer, 9 ĠLesen,
#        10 Ġ银行, 11 ĠX
HAND_WS = np.array([1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1], dtype=bool)
HAND_TABLE = make_table(
    [
        ([2], {"de": [[6, 7]]}),  # bank -> Ba nk (longer)
        ([4, 5, 3], {"de": [[9]]}),  # reading -> Lesen (shorter)
        ([3], {"de": [[11]]}),  # a continuation token: matches only where it opens a word
    ],
    vocab_size=12,
)
ALWAYS = CodeswitchConfig(ratio=1.0, mode="input-only", seed=5)


def test_hand_word_at_start_longer_and_shorter_translations():
    toks, mask = both([2, 1, 4, 5, 3], 0, HAND_TABLE, HAND_WS, ALWAYS, [0])
    assert toks == [6, 7, 1, 9]
    assert mask == [0, 0, 1, 0]


def test_hand_document_end_full_word_vs_partial_prefix():
    # the run cut by the document end is the full word: [2] matches
    assert both([1, 2], 3, HAND_TABLE, HAND_WS, ALWAYS, [0]) == ([1, 6, 7], [1, 0, 0])
    # a partial prefix [4, 5] of the source word [4, 5, 3] must not match
    assert both([1, 4, 5], 3, HAND_TABLE, HAND_WS, ALWAYS, [0]) == ([1, 4, 5], [1, 1, 1])
    # a longer word [2, 3] ("banking") holding the source word [2] as a prefix must not match
    assert both([2, 3, 1], 3, HAND_TABLE, HAND_WS, ALWAYS, [0]) == ([2, 3, 1], [1, 1, 1])


def test_hand_eod_and_document_start_open_words():
    # EOD is its own word, never replaced; the token after it opens a word even though 'ing'
    # is a continuation token; so does token 0 of a document.
    assert both([2, 0, 3], 1, HAND_TABLE, HAND_WS, ALWAYS, [0]) == ([6, 7, 0, 11], [0, 0, 1, 0])
    assert both([3, 1], 1, HAND_TABLE, HAND_WS, ALWAYS, [0]) == ([11, 1], [0, 1])
    # without declaring EOD special, [0, 3] is one word and nothing after EOD matches
    assert both([2, 0, 3], 1, HAND_TABLE, HAND_WS, ALWAYS) == ([6, 7, 0, 3], [0, 0, 1, 1])
    # a table entry made of the special token itself is never replaced
    eod_table = make_table([([0], {"de": [[11]]})], vocab_size=12)
    assert both([0, 1, 0], 0, eod_table, HAND_WS, ALWAYS, [0]) == ([0, 1, 0], [1, 1, 1])


def test_hand_multi_word_entry_never_matches_and_is_counted(caplog):
    # [Ġbank, Ġthe] holds a word start after its first token: no single word can equal it
    table = make_table([([2, 1], {"de": [[11]]}), ([2], {"de": [[9]]})], vocab_size=12)
    with caplog.at_level("WARNING"):
        cs = Codeswitcher(table, HAND_WS, ALWAYS, [0])
    assert cs.unreachable_entries == 1 and cs.num_candidates == 2
    assert "1 of 2 source token sequences" in caplog.text
    assert both([2, 1], 0, table, HAND_WS, ALWAYS, [0]) == ([9, 1], [0, 1])


def test_hand_ratio_zero_vanilla_empty_table_empty_document():
    doc = [2, 1, 4, 5, 3, 0]
    assert both(doc, 0, HAND_TABLE, HAND_WS, CodeswitchConfig(ratio=0.0), [0]) == (doc, [1] * 6)
    vanilla = CodeswitchConfig(ratio=1.0, mode="vanilla", seed=5)
    assert both(doc, 0, HAND_TABLE, HAND_WS, vanilla, [0]) == ([6, 7, 1, 9, 0], [1] * 5)
    # an empty table is an error (issue 11: no silent nothing), naming the table
    with pytest.raises(ValueError, match=r"/empty\.jsonl: no entry has a translation"):
        Codeswitcher(make_table([], languages=["de"], vocab_size=12, path="/empty.jsonl"), HAND_WS, ALWAYS, [0])
    assert both([], 0, HAND_TABLE, HAND_WS, ALWAYS, [0]) == ([], [])


def test_rng_is_splitmix64():
    # splitmix64 seeded with 0: first output 0xE220A8397B1DCDAF, second 0x6E789E6AA1B965F4
    g = 0x9E3779B97F4A7C15
    assert _mix64(g) == 0xE220A8397B1DCDAF
    assert _mix64(2 * g) == 0x6E789E6AA1B965F4


def test_decisions_depend_on_original_word_offset_only():
    # the draw for a word depends on (seed, doc, offset in the ORIGINAL document): a longer
    # translation earlier in the document does not shift the decisions after it.
    ws = np.ones(4, bool)
    table = make_table([([1], {"de": [[2, 2, 2]]}), ([3], {"de": [[2]]})], vocab_size=4)
    cfg = CodeswitchConfig(ratio=0.5, seed=11)
    doc = [3] + [1] * 40
    cs = Codeswitcher(table, ws, cfg)
    toks_a, _ = cs.apply(np.array(doc, np.int32), 9)
    doc_b = [0] + [1] * 40  # first word differs (never a candidate), rest identical
    toks_b, _ = cs.apply(np.array(doc_b, np.int32), 9)
    assert toks_a[1:].tolist() == toks_b[1:].tolist()
    # and on doc_index / seed
    assert cs.apply(np.array(doc, np.int32), 10)[0].tolist() != toks_a.tolist()


# ---------------------------------------------------------------------- random equivalence
def random_setup(rng, vocab=300, n_words=120, languages=("ar", "de", "zh")):
    ws = rng.random(vocab) < 0.4
    ws[0] = True  # EOD
    starts = np.flatnonzero(ws[1:]) + 1
    conts = np.flatnonzero(~ws)

    def word():
        return [int(rng.choice(starts))] + [int(x) for x in rng.choice(conts, size=rng.integers(0, 3))]

    words = []
    for _ in range(n_words):
        tr = {}
        for lang in languages:
            k = int(rng.integers(0, 4))
            if k:
                tr[lang] = [word() for _ in range(k)]
        words.append((word(), tr))
    # duplicate sources: their candidates merge
    words += [(words[i][0], {"de": [word()]}) for i in range(5)]
    return ws, make_table(words, languages=list(languages), vocab_size=vocab), starts, conts


def random_doc(rng, table, starts, conts, n_words, eod=0):
    doc = []
    for _ in range(n_words):
        r = rng.random()
        if r < 0.5:
            doc += list(table.entries[int(rng.integers(len(table.entries)))].ids)
        elif r < 0.52:
            doc.append(eod)
        else:
            doc += [int(rng.choice(starts))] + [int(x) for x in rng.choice(conts, size=rng.integers(0, 3))]
    if rng.random() < 0.5:  # sometimes start with continuation tokens / end mid-word
        doc = [int(rng.choice(conts))] + doc
    return doc


@pytest.mark.parametrize(
    "seed,ratio,mode,languages",
    [
        (0, 0.05, "input-only", None),
        (1, 0.3, "input-only", None),
        (2, 0.3, "vanilla", None),
        (3, 1.0, "input-only", ("zh", "ar")),
        (4, 0.5, "vanilla", ("de",)),
        (2**64 - 1, 0.7, "input-only", None),
    ],
)
def test_cpp_matches_reference_on_random_corpora(seed, ratio, mode, languages):
    rng = np.random.default_rng(seed % 1000)
    ws, table, starts, conts = random_setup(rng)
    cfg = CodeswitchConfig(ratio=ratio, mode=mode, seed=seed, languages=languages)
    cs = Codeswitcher(table, ws, cfg, special_ids=[0])
    changed = 0
    for d in range(40):
        doc = np.array(random_doc(rng, table, starts, conts, int(rng.integers(0, 60))), np.int32)
        doc_index = int(rng.integers(0, 2**40))
        got = cs.apply(doc, doc_index)
        ref = reference_codeswitch(doc, doc_index, table, ws, cfg, special_ids=[0])
        assert got[0].tobytes() == ref[0].tobytes(), d
        assert got[1].tobytes() == ref[1].tobytes(), d
        assert len(got[0]) == len(got[1])
        changed += got[0].tolist() != doc.tolist()
        if mode == "vanilla":
            assert got[1].all()
    assert changed > 0


# ---------------------------------------------------------------------------- statistics
def test_language_then_translation_uniform_and_merge():
    # source [1] from two entries: de {5} and de {5, 6} merge to de [5, 6]; zh [7, 8, 9].
    # language uniform then translation uniform: de 1/2 (5: 1/4, 6: 1/4), zh 1/2 (1/6 each).
    # (uniform over all 5 translations would give 1/5 each.)
    ws = np.ones(10, bool)
    table = make_table([([1], {"de": [[5]]}), ([1], {"de": [[5], [6]], "zh": [[7], [8], [9]]})], vocab_size=10)
    cs = Codeswitcher(table, ws, CodeswitchConfig(ratio=1.0, seed=1))
    n = 3000
    out = cs.apply(np.ones(n, np.int32), 0)[0]
    freq = {t: (out == t).mean() for t in (5, 6, 7, 8, 9)}
    for t, p in {5: 1 / 4, 6: 1 / 4, 7: 1 / 6, 8: 1 / 6, 9: 1 / 6}.items():
        assert abs(freq[t] - p) < 5 * np.sqrt(p * (1 - p) / n), (t, freq)
    # languages restriction: zh only
    cs_zh = Codeswitcher(table, ws, CodeswitchConfig(ratio=1.0, seed=1, languages=("zh",)))
    assert set(cs_zh.apply(np.ones(300, np.int32), 0)[0].tolist()) == {7, 8, 9}
    assert cs_zh.languages == ["zh"]
    with pytest.raises(ValueError, match="codeswitch languages fr are not in"):
        Codeswitcher(table, ws, CodeswitchConfig(languages=("fr",)))


def test_realised_rate_matches_ratio():
    ws = np.ones(50, bool)
    table = make_table([([i], {"de": [[i + 25]]}) for i in range(1, 25)], vocab_size=50)
    cs = Codeswitcher(table, ws, CodeswitchConfig(ratio=0.05, seed=99))
    n = 0
    hits = 0
    rng = np.random.default_rng(0)
    for d in range(50):
        doc = rng.integers(1, 50, size=4000).astype(np.int32)
        out, mask = cs.apply(doc, d)
        n += int((doc < 25).sum())
        hits += int((mask == 0).sum())
    p = 0.05
    assert abs(hits / n - p) < 5 * np.sqrt(p * (1 - p) / n), hits / n


# ------------------------------------------------------------------------ bad input, config
def test_bad_inputs_one_line_errors():
    ws = np.ones(10, bool)
    cfg = CodeswitchConfig(ratio=1.0)
    with pytest.raises(ValueError, match=r"^/t\.jsonl: word 'w0' has token id 12 outside the vocabulary \(size 10\)$"):
        Codeswitcher(make_table([([12], {"de": [[1]]})], path="/t.jsonl"), ws, cfg)
    with pytest.raises(ValueError, match=r"translation 't0de0' \(de\) of word 'w0' has token id 10 outside"):
        Codeswitcher(make_table([([1], {"de": [[10]]})]), ws, cfg)
    with pytest.raises(ValueError, match="has no token ids"):
        Codeswitcher(make_table([([1], {"de": [[]]})]), ws, cfg)
    with pytest.raises(ValueError, match="contains special token id 0"):
        Codeswitcher(make_table([([1], {"de": [[0]]})]), ws, cfg, special_ids=[0])
    cs = Codeswitcher(make_table([([1], {"de": [[2]]})]), ws, cfg)
    with pytest.raises(ValueError, match=r"^document 4: token id 10 at position 2 is outside the vocabulary \(size 10\)$"):
        cs.apply(np.array([1, 1, 10], np.int32), 4)
    with pytest.raises(ValueError, match="token id -1 at position 0"):
        cs.apply(np.array([-1], np.int32), 0)
    with pytest.raises(ValueError, match="ratio must lie in"):
        CodeswitchConfig(ratio=1.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        CodeswitchConfig(mode="output-only")


# ------------------------------------------------------------------------------ datasets
@pytest.fixture(scope="module")
def mcore():
    from megatron.core.datasets import indexed_dataset

    return indexed_dataset


def write_input(mcore, prefix, docs, dtype, split_every=None):
    """Write with megatron-core's builder; split_every: sequences per document (sentences)."""
    import torch

    builder = mcore.IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for i, doc in enumerate(docs):
        builder.add_item(torch.tensor(doc, dtype=torch.int64))
        if split_every is None or i % split_every == split_every - 1:
            builder.end_document()
    if split_every is not None and len(docs) % split_every:
        builder.end_document()
    builder.finalize(prefix + ".idx")


def read_bytes(prefix):
    return {ext: open(prefix + ext, "rb").read() for ext in (".bin", ".idx")}


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_dataset_matches_apply_and_is_thread_and_chunk_independent(tmp_path, mcore, dtype):
    rng = np.random.default_rng(5)
    ws, table, starts, conts = random_setup(rng)
    docs = [random_doc(rng, table, starts, conts, int(rng.integers(0, 80))) + [0] for _ in range(300)]
    docs[7] = []  # an empty sequence
    src = str(tmp_path / "in")
    write_input(mcore, src, docs, dtype, split_every=3)
    cfg = CodeswitchConfig(ratio=0.2, seed=17)
    runs = [(1, 1 << 20), (2, 7), (3, 1)]
    outs = []
    for threads, chunk in runs:
        out = str(tmp_path / f"out_{threads}_{chunk}")
        stats = codeswitch_dataset(src, out, table, ws, cfg, threads=threads, special_ids=[0], chunk_tokens=chunk)
        outs.append(out)
        assert stats.substituted > 0 and stats.documents == len(docs)
    first = read_bytes(outs[0]), read_bytes(outs[0] + "_lossmask")
    for out in outs[1:]:
        assert (read_bytes(out), read_bytes(out + "_lossmask")) == first
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]

    text = mcore.IndexedDataset(outs[0])
    mask = mcore.IndexedDataset(outs[0] + "_lossmask")
    source = mcore.IndexedDataset(src)
    assert text.index.dtype == dtype and mask.index.dtype == np.uint8
    assert len(text) == len(mask) == len(docs)
    np.testing.assert_array_equal(text.document_indices, source.document_indices)
    np.testing.assert_array_equal(text.sequence_lengths, mask.sequence_lengths)
    cs = Codeswitcher(table, ws, cfg, special_ids=[0])
    for i, doc in enumerate(docs):
        want_t, want_m = cs.apply(np.array(doc, np.int32), i)
        np.testing.assert_array_equal(text[i].astype(np.int32), want_t)
        np.testing.assert_array_equal(mask[i], want_m)
    for i in (0, 1, 2):  # and against the independent reference
        ref_t, ref_m = reference_codeswitch(np.array(docs[i], np.int32), i, table, ws, cfg, [0])
        np.testing.assert_array_equal(text[i].astype(np.int32), ref_t)
        np.testing.assert_array_equal(mask[i], ref_m)


def test_dataset_ratio_zero_is_byte_identical_copy(tmp_path, mcore, caplog):
    rng = np.random.default_rng(6)
    ws, table, starts, conts = random_setup(rng)
    docs = [random_doc(rng, table, starts, conts, 30) for _ in range(50)]
    src, out = str(tmp_path / "in"), str(tmp_path / "out")
    write_input(mcore, src, docs, np.uint16)
    with caplog.at_level("INFO", logger="megatron_prealign.data.codeswitch"):
        stats = codeswitch_dataset(src, out, table, ws, CodeswitchConfig(ratio=0.0), threads=2, special_ids=[0],
                                   log_interval_s=0)
    assert any("tokens/s" in r.message and "ETA" in r.message for r in caplog.records)
    assert read_bytes(out) == read_bytes(src)  # our .idx writer == megatron-core's
    assert stats.substituted == 0 and stats.eligible > 0
    m = mcore.IndexedDataset(out + "_lossmask")
    assert all(m[i].all() for i in range(len(m)))


def test_dataset_multimodal_modes_and_empty_dataset_are_kept(tmp_path, mcore):
    import torch

    ws = np.ones(20, bool)
    table = make_table([([1], {"de": [[2, 3]]})], vocab_size=20)
    src = str(tmp_path / "mm")
    builder = mcore.IndexedDatasetBuilder(src + ".bin", dtype=np.int32, multimodal=True)
    for k in range(6):
        builder.add_item(torch.tensor([1, 4, 1, 5]), mode=k % 3)
        builder.end_document()
    builder.finalize(src + ".idx")
    out = str(tmp_path / "mm_out")
    codeswitch_dataset(src, out, table, ws, CodeswitchConfig(ratio=0.0))
    assert read_bytes(out) == read_bytes(src)
    codeswitch_dataset(src, out, table, ws, CodeswitchConfig(ratio=1.0))
    got = mcore.IndexedDataset(out, multimodal=True)
    np.testing.assert_array_equal(got.index.sequence_modes, [0, 1, 2, 0, 1, 2])  # (.sequence_modes asserts)
    assert got[0][0].tolist() == [2, 3, 4, 2, 3, 5]  # multimodal items are (tokens, mode)
    empty = str(tmp_path / "empty")
    mcore.IndexedDatasetBuilder(empty + ".bin", dtype=np.uint16).finalize(empty + ".idx")
    stats = codeswitch_dataset(empty, str(tmp_path / "empty_out"), table, ws, CodeswitchConfig(), threads=2)
    assert stats.documents == 0 and read_bytes(str(tmp_path / "empty_out")) == read_bytes(empty)
    # (megatron-core cannot mmap an empty .bin, its own or ours: check the mask's index instead)
    from megatron_prealign.data.indexed import check_indexed_dataset

    header = check_indexed_dataset(str(tmp_path / "empty_out_lossmask"))
    assert header.sequence_count == 0 and header.dtype == np.uint8


def test_dataset_bad_inputs_leave_nothing_behind(tmp_path, mcore):
    ws = np.ones(300, bool)
    table = make_table([([1], {"de": [[2]]})], vocab_size=300)
    src = str(tmp_path / "in")
    write_input(mcore, src, [[1, 2, 3], [4, 299 + 1, 5]], np.uint16)
    cfg = CodeswitchConfig(ratio=1.0)
    with pytest.raises(ValueError, match=r"in\.bin: sequence 1: token id 300 at position 1 is outside the vocabulary"):
        codeswitch_dataset(src, str(tmp_path / "out"), table, ws, cfg, threads=2, chunk_tokens=1)
    assert sorted(os.listdir(tmp_path)) == ["in.bin", "in.idx"]
    with pytest.raises(ValueError, match="would overwrite the input"):
        codeswitch_dataset(src, src, table, ws, cfg)
    with pytest.raises(ValueError, match="no such file"):
        codeswitch_dataset(str(tmp_path / "missing"), str(tmp_path / "out"), table, ws, cfg)
    assert sorted(os.listdir(tmp_path)) == ["in.bin", "in.idx"]


def test_cli_end_to_end(tmp_path, mcore):
    from megatron_prealign.tokenizer import build_tokenizer

    tok = build_tokenizer("NullTokenizer", vocab_size=100)  # ids 0..99 are words, EOD = 100
    table = make_table([([i], {"de": [[i + 50]], "zh": [[i + 60, i + 61]]}) for i in range(10)], vocab_size=101)
    table.tokenizer = tok.describe()
    table.save(str(tmp_path / "table.jsonl"))
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, 20, size=200).tolist() + [100] for _ in range(20)]
    write_input(mcore, str(tmp_path / "in"), docs, np.uint16)
    cmd = [
        sys.executable, os.path.join(REPO, "tools", "codeswitch_dataset.py"),
        "--input-prefix", str(tmp_path / "in"), "--output-prefix", str(tmp_path / "out"),
        "--prealign-table", str(tmp_path / "table.jsonl"), "--codeswitch-ratio", "0.3",
        "--codeswitch-languages", "zh", "--seed", "3", "--threads", "2",
        "--tokenizer-type", "NullTokenizer", "--vocab-size", "100",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "substituted" in r.stdout and "zh=" in r.stdout
    text = mcore.IndexedDataset(str(tmp_path / "out"))
    cs = Codeswitcher(table, tok.word_start_mask(), CodeswitchConfig(ratio=0.3, seed=3, languages=("zh",)), tok.special_ids)
    for i, doc in enumerate(docs):
        np.testing.assert_array_equal(text[i].astype(np.int32), cs.apply(np.array(doc, np.int32), i)[0])
    r = subprocess.run(cmd[:-1] + ["50"], capture_output=True, text=True, timeout=120)  # other vocab
    assert r.returncode != 0
    assert "--alignment-table" in r.stderr.strip().splitlines()[-1]
    bad = cmd[:cmd.index("--codeswitch-languages") + 1] + ["fr"] + cmd[cmd.index("--codeswitch-languages") + 2 :]
    r = subprocess.run(bad, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "--codeswitch-languages: fr not in --alignment-table" in r.stderr.strip().splitlines()[-1]


def test_dataset_uint16_input_with_wider_translation_ids_writes_int32(tmp_path, mcore):
    """En-Clone of a GPT-2 corpus: uint16 input, clone ids up to 2V > 65535 -> int32 output."""
    vocab = 40000  # clone ids reach 79999
    ws = np.ones(2 * vocab, bool)
    table = make_table([([5], {"en_clone": [[vocab + 5]]}), ([39999], {"en_clone": [[vocab + 39999]]})],
                       vocab_size=2 * vocab)
    docs = [[5, 7, 39999, 0], [], [7, 5, 39999, 0]]
    src = str(tmp_path / "in")
    write_input(mcore, src, docs, np.uint16)
    cfg = CodeswitchConfig(ratio=1.0, seed=3)
    stats = codeswitch_dataset(src, str(tmp_path / "out"), table, ws, cfg, special_ids=[0])
    assert stats.substituted == 4
    text = mcore.IndexedDataset(str(tmp_path / "out"))
    mask = mcore.IndexedDataset(str(tmp_path / "out_lossmask"))  # keep it alive: items view its mmap
    assert text.index.dtype == np.int32
    for i, doc in enumerate(docs):
        ref_t, ref_m = reference_codeswitch(np.array(doc, np.int32), i, table, ws, cfg, [0])
        np.testing.assert_array_equal(text[i], ref_t)
        np.testing.assert_array_equal(mask[i], ref_m)
    assert sorted(os.listdir(tmp_path)) == ["in.bin", "in.idx", "out.bin", "out.idx", "out_lossmask.bin", "out_lossmask.idx"]
