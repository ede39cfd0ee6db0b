"""CLKA generator (determinism, scripts, distractors) and likelihood ranking on a known model."""

import json

import numpy as np
import pytest
import torch

from megatron_prealign.eval import clka
from megatron_prealign.synthetic import clka as gen
from megatron_prealign.synthetic.clka_templates import CLOSED_ENTITIES, LANGUAGES, RELATIONS


def test_transliteration_is_recognisable_across_scripts():
    name = [["ka", "mo", "ri"], ["da", "ve", "tu"]]
    assert gen.render_name(name, "en") == "Kamori Davetu"
    assert gen.render_name(name, "de") == "Kamori Davetu"
    assert gen.render_name(name, "ru") == "Камори Давету"
    assert gen.render_name(name, "ar") == "كاموري دافيتو"
    assert gen.render_name(name, "zh") == "卡莫里·达韦图"
    with pytest.raises(ValueError, match="no name rendering for language 'fr'"):
        gen.render_name(name, "fr")


def test_generator_deterministic_and_seed_dependent():
    cfg = gen.CLKAConfig(seed=7, facts_per_period=40, num_periods=2, object_pool_size=30)
    a = [gen.fact_record(f) for f in gen.generate_facts(cfg)]
    b = [gen.fact_record(f) for f in gen.generate_facts(cfg)]
    c = [gen.fact_record(f) for f in gen.generate_facts(gen.CLKAConfig(seed=8, facts_per_period=40, num_periods=2, object_pool_size=30))]
    assert a == b and a != c
    assert json.dumps(gen.build_test_items(gen.generate_facts(cfg), "ru")) == json.dumps(gen.build_test_items(gen.generate_facts(cfg), "ru"))
    assert [f["period"] for f in a] == [0] * 40 + [1] * 40
    assert sorted({f["frequency"] for f in a}) == [1, 2, 5, 10]


def test_test_items_true_statement_and_same_type_distractors():
    facts = gen.generate_facts(gen.CLKAConfig(seed=3, facts_per_period=60, object_pool_size=20))
    by_pid = {r.pid: r for r in RELATIONS}
    for lang in LANGUAGES:
        items = gen.build_test_items(facts, lang)
        for f, item in zip(facts, items):
            assert len(item["options"]) == 4 and len(set(item["options"])) == 4
            true = by_pid[f.pid].templates[lang].format(s=f.subject.forms[lang], o=f.object.forms[lang])
            assert item["options"][item["answer"]] == true
            want = {"man", "woman"} if by_pid[f.pid].object_type == "person" else {by_pid[f.pid].object_type}
            assert f.object.type in want and all(d.type in want and d.id != f.object.id for d in f.distractors)
            assert all(f.subject.forms[lang] in o for o in item["options"])
    # The same person has one rendering per script and each rendering is unique.
    for lang in LANGUAGES:
        forms = [f.subject.forms[lang] for f in facts]
        assert len(set(forms)) == len(forms)
    # Closed-class objects use the translation tables.
    country = [f for f in facts if f.object.type == "country"]
    if country:
        f = country[0]
        assert f.object.forms["zh"] in [c["zh"] for c in CLOSED_ENTITIES["country"]]


def test_missing_language_is_one_line_error():
    facts = gen.generate_facts(gen.CLKAConfig(facts_per_period=4, object_pool_size=5))
    with pytest.raises(ValueError, match=r"^no CLKA templates for language 'fr' \(have: en, de, zh, ru, ar, en_clone\)$"):
        gen.build_test_items(facts, "fr")


def test_knowledge_statements_repeat_by_frequency():
    facts = gen.generate_facts(gen.CLKAConfig(facts_per_period=8, frequencies=(1, 3), object_pool_size=5))
    docs = gen.knowledge_statements(facts)
    assert len(docs) == 4 * 1 + 4 * 3
    for f in facts:
        assert docs.count(gen.statement(f.pid, f.subject, f.object, "en")) == f.frequency


def test_write_token_documents_roundtrip(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    docs = [[5, 6, 0], [7, 0], [1, 2, 3, 4, 0]]
    n_docs, n_tok = gen.write_token_documents(str(tmp_path / "k_text_document"), docs, vocab_size=100)
    assert (n_docs, n_tok) == (3, 10)
    ds = IndexedDataset(str(tmp_path / "k_text_document"))
    assert [ds[i].tolist() for i in range(3)] == docs and ds[0].dtype == np.uint16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k_text_document.bin", "k_text_document.idx"]


class _FixedScores:
    """score_fn returning hand-set log-likelihoods keyed by continuation."""

    def __init__(self, table):
        self.table = table

    def __call__(self, contexts, conts):
        from megatron_prealign.eval.scoring import SequenceScore

        return [SequenceScore(logprob=self.table[tuple(c)], num_tokens=len(c)) for c in conts]


def test_ranking_sum_vs_length_normalised_and_ties():
    enc = {"a": [1], "b": [2, 2], "c": [3], "d": [4]}
    items = [{"options": ["a", "b", "c", "d"], "answer": 1, "pid": "P19", "frequency": 1, "period": 0},
             {"options": ["a", "b", "c", "d"], "answer": 0, "pid": "P20", "frequency": 2, "period": 0}]
    # sums: a -3, b -4 (mean -2), c -5, d -6
    res = clka.evaluate_items(items, enc.__getitem__, _FixedScores({(1,): -3.0, (2, 2): -4.0, (3,): -5.0, (4,): -6.0}), [0], "en")
    assert res.accuracy == 50.0 and res.accuracy_length_normalized == 50.0
    assert res.by_relation == {"P19": 0.0, "P20": 100.0} and res.by_frequency == {"1": 0.0, "2": 100.0}
    tie = clka.evaluate_items(items[:1], enc.__getitem__, _FixedScores({(1,): -1.0, (2, 2): -1.0, (3,): -1.0, (4,): -1.0}), [0], "en")
    assert tie.accuracy == 25.0


@pytest.fixture(scope="module")
def bigram_model(single_process_parallel_state):
    from megatron_prealign.platform import seed_all
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model

    seed_all()
    m = build_gpt_model(GPTModelConfig(num_layers=1, hidden_size=16, num_attention_heads=2, vocab_size=8, max_sequence_length=16,
                                       hidden_dropout=0.0, attention_dropout=0.0, untie_embeddings_and_output_weights=True)).eval()
    yield m


def test_model_certain_of_one_option(bigram_model):
    import reference_models as rm
    from megatron_prealign.eval.scoring import score_sequences

    table = torch.full((8, 8), -12.0)
    for a, b in [(7, 0), (0, 1), (1, 2), (2, 3)]:
        table[a, b] = 12.0  # EOD(7) -> 0 -> 1 -> 2 -> 3 is (almost) certain
    rm.set_bigram_weights(bigram_model, table)
    enc = {"true": [0, 1, 2, 3], "x": [0, 1, 4, 3], "y": [0, 5, 2, 3], "z": [6, 1, 2, 3]}
    items = [{"options": ["x", "true", "y", "z"], "answer": 1}, {"options": ["true", "x", "y", "z"], "answer": 0},
             {"options": ["x", "y", "true", "z"], "answer": 3}]
    score = lambda c, s: score_sequences(bigram_model, c, s, batch_size=4, pad_id=7)  # noqa: E731
    res = clka.evaluate_items(items, enc.__getitem__, score, [7], "en")
    assert res.items == 3 and res.accuracy == pytest.approx(200.0 / 3)


# ----------------------------------------------------------------------------- informative CLKA (issue 9)


def _naive_familiarity(items, text):
    """Independent reference: count each option's object, credit 1/k for a k-way tie at the top."""
    total = 0.0
    for it in items:
        counts = [text.count(o) for o in it["objects_en"]]
        top = [i for i, c in enumerate(counts) if c == max(counts)]
        total += (1.0 / len(top)) if it["answer"] in top else 0.0
    return 100.0 * total / len(items)


@pytest.mark.parametrize("cfg", [
    gen.CLKAConfig(seed=5, facts_per_period=96, num_periods=2, object_pool_size=12),
    gen.CLKAConfig(seed=9, facts_per_period=200, frequencies=(1, 2, 5, 10), object_pool_size=40),
    gen.CLKAConfig(seed=2, facts_per_period=40, frequencies=(3,), num_distractors=4, object_pool_size=10),
])
def test_every_option_object_occurs_as_often_as_the_true_object(cfg):
    facts = gen.generate_facts(cfg)
    text = "\n".join(gen.knowledge_statements(facts, language="en"))
    items = gen.build_test_items(facts, "en")
    assert len(items) == cfg.facts_per_period * cfg.num_periods
    for f, it in zip(facts, items):
        true = f.object.forms["en"]
        assert it["objects_en"][it["answer"]] == true and len(set(it["objects_en"])) == cfg.num_distractors + 1
        counts = [text.count(o) for o in it["objects_en"]]
        assert counts == [counts[it["answer"]]] * len(counts) and counts[0] >= f.frequency
        # the option statements differ exactly in the object
        for opt, obj in zip(it["options"], it["objects_en"]):
            assert opt == gen.statement(f.pid, f.subject, gen.Entity("x", "x", {"en": obj}), "en")
    # familiarity is exactly at chance, by an independent naive count and by the library
    chance = 100.0 / (cfg.num_distractors + 1)
    assert _naive_familiarity(items, text) == pytest.approx(chance)
    fam = clka.familiarity_baseline(items, text, "en")
    assert fam.accuracy == pytest.approx(chance) and fam.chance == pytest.approx(chance) and fam.objects_seen == 100.0


def test_familiarity_baseline_detects_unseen_distractors():
    items = [{"options": ["a", "b", "c", "d"], "answer": 2, "objects_en": ["Xo", "Yo", "Zo", "Wo"]},
             {"options": ["a", "b", "c", "d"], "answer": 0, "objects_en": ["Xo", "Yo", "Qa", "Ra"]},
             {"options": ["a", "b", "c", "d"], "answer": 1, "objects_en": ["Pe", "Xo", "Zo", "Ka"]}]
    text = "Zo Zo Xo Yo"  # item 1: Zo most frequent (right); item 2: Xo/Yo tie (1/2); item 3: Zo beats Xo (wrong)
    fam = clka.familiarity_baseline(items, text, "en")
    assert fam.accuracy == pytest.approx(100.0 * 1.5 / 3) == pytest.approx(_naive_familiarity(items, text))
    assert fam.stderr == pytest.approx(100.0 * (0.5 * 0.5 / 3) ** 0.5)
    with pytest.raises(ValueError, match="no 'objects_en' list"):
        clka.familiarity_baseline([{"options": ["a", "b"], "answer": 0, "id": "q"}], text, "en")


def test_chance_and_stderr_reported():
    enc = {"a": [1], "b": [2], "c": [3], "d": [4]}
    items = [{"options": ["a", "b", "c", "d"], "answer": 0}, {"options": ["a", "b"], "answer": 1}]
    res = clka.evaluate_items(items, enc.__getitem__, _FixedScores({(1,): -1.0, (2,): -2.0, (3,): -3.0, (4,): -4.0}), [0], "en")
    assert res.accuracy == 50.0 and res.chance == pytest.approx(100 * (0.25 + 0.5) / 2)
    assert res.stderr == pytest.approx(100 * (0.25 / 2) ** 0.5)


def test_latin_names_render_in_every_script():
    assert gen.render_latin_word("kamori", "ru") == "Камори" and gen.render_latin_word("kamori", "ar") == "كاموري"
    assert gen.render_latin_word("kamori", "zh") == "卡莫里"  # same as the CV-syllable rendering
    assert gen.render_latin_word("thelwin", "en", capitalize=False) == "thelwin"
    assert gen.render_latin_word("thelwin", "zh") == "泰里努"  # th-e (t), lw-i (l ~ r), n (trailing consonant: u row)
    with pytest.raises(ValueError, match="lowercase a-z"):
        gen.render_latin_word("Ab", "en")


@pytest.fixture(scope="module")
def tiny_bpe(tmp_path_factory):
    from megatron_prealign.synthetic import english as synthetic
    from megatron_prealign.tokenizer import build_tokenizer
    from megatron_prealign.tokenizer.train import train_byte_level_bpe

    root = tmp_path_factory.mktemp("clka_bpe")
    docs = synthetic.generate_documents(synthetic.SyntheticCorpusConfig(num_documents=400, seed=3))
    corpus = root / "en.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    files = train_byte_level_bpe((json.loads(l)["text"] for l in corpus.read_text().splitlines()), str(root / "tok"), vocab_size=500)
    tok = build_tokenizer("GPT2BPETokenizer", vocab_file=files["vocab_file"], merge_file=files["merge_file"])
    return {"root": root, "corpus": str(corpus), "files": files, "tok": tok}


def _make_clka(tiny_bpe, out, *extra):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "make_clka.py")
    spec = importlib.util.spec_from_file_location("_make_clka", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    f = tiny_bpe["files"]
    return mod.main(["--output-dir", str(out), "--facts-per-period", "40", "--object-pool-size", "12",
                     "--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", f["vocab_file"], "--merge-file", f["merge_file"]]
                    + list(extra))


def _names(out):
    rows = [json.loads(l) for l in open(out / "facts.jsonl", encoding="utf-8")]
    ents = [r["subject"] for r in rows] + [r["object"] for r in rows] + [d for r in rows for d in r["distractors"]]
    return [e["forms"]["en"] for e in ents if e["id"].split(":")[0] not in CLOSED_ENTITIES]


def test_corpus_piece_names_are_multi_piece_and_deterministic(tiny_bpe, capsys):
    tok, root = tiny_bpe["tok"], tiny_bpe["root"]
    assert _make_clka(tiny_bpe, root / "pieces", "--name-pieces", "corpus", "--name-corpus", tiny_bpe["corpus"]) == 0
    printed = capsys.readouterr().out
    assert "tokens per name" in printed and "familiarity baseline on the knowledge text (en): 25.0%" in printed
    names = _names(root / "pieces")
    for name in set(names):
        pieces = [tok.detokenize([i]) for i in tok.tokenize(" " + name)]
        assert 2 <= len(pieces) <= 4, (name, pieces)
        assert all(len(p.strip()) >= 2 for p in pieces), (name, pieces)
    # the same seed gives the same files; another seed other names
    assert _make_clka(tiny_bpe, root / "pieces2", "--name-pieces", "corpus", "--name-corpus", tiny_bpe["corpus"]) == 0
    for f in ("facts.jsonl", "test/en.jsonl", "knowledge.jsonl"):
        assert (root / "pieces" / f).read_bytes() == (root / "pieces2" / f).read_bytes()
    assert _make_clka(tiny_bpe, root / "pieces3", "--name-pieces", "corpus", "--name-corpus", tiny_bpe["corpus"], "--seed", "7") == 0
    assert _names(root / "pieces3") != names
    # the default syllable names split into far more (single-letter) tokens with this vocabulary
    assert _make_clka(tiny_bpe, root / "syll") == 0
    syl = _names(root / "syll")
    mean = lambda ns: sum(len(tok.tokenize(" " + n)) for n in ns) / len(ns)  # noqa: E731
    assert mean(syl) > mean(names) + 1
    manifest = json.load(open(root / "pieces" / "manifest.json"))
    assert manifest["name_stats"]["names"]["max_tokens_per_name"] <= 4
    # test sets keep the multilingual templates and the knowledge text file is the binarized one
    items = clka.read_test_items(str(root / "pieces" / "test" / "ru.jsonl"))
    assert all(it["objects"][it["answer"]] in it["options"][it["answer"]] for it in items)
    text = [json.loads(l)["text"] for l in open(root / "pieces" / "knowledge.jsonl", encoding="utf-8")]
    assert len(text) == sum(json.loads(l)["frequency"] for l in open(root / "pieces" / "facts.jsonl", encoding="utf-8"))


def test_vocab_piece_names(tiny_bpe):
    assert _make_clka(tiny_bpe, tiny_bpe["root"] / "vocab", "--name-pieces", "vocab") == 0
    for name in set(_names(tiny_bpe["root"] / "vocab")):
        assert 2 <= len(tiny_bpe["tok"].tokenize(" " + name)) <= 4


def test_attach_objects_to_older_items(tmp_path):
    facts = gen.generate_facts(gen.CLKAConfig(seed=4, facts_per_period=12, object_pool_size=8))
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(gen.fact_record(f)) + "\n" for f in facts))
    for lang in ("en", "ru"):
        new = gen.build_test_items(facts, lang)
        old = [{k: v for k, v in it.items() if k not in ("objects", "objects_en")} for it in new]
        assert clka.attach_objects(old, str(tmp_path / "facts.jsonl")) == new
    bad = [dict(old[0], options=["x"] + old[0]["options"][1:])]
    with pytest.raises(ValueError, match="no statement of its fact"):
        clka.attach_objects(bad, str(tmp_path / "facts.jsonl"))
