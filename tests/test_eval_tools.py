"""End-to-end runs of the evaluation CLIs (tools/*.py, in-process) on a tiny saved checkpoint."""

import importlib.util
import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def setup(tmp_path_factory, single_process_parallel_state):
    from megatron.core import dist_checkpointing

    from megatron_prealign.synthetic import clka
    from megatron_prealign.platform import seed_all
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
    from megatron_prealign.tokenizer import EnCloneTokenizer, build_tokenizer
    from megatron_prealign.tokenizer.train import train_byte_level_bpe

    root = tmp_path_factory.mktemp("evaltools")
    facts = clka.generate_facts(clka.CLKAConfig(facts_per_period=60, object_pool_size=20))
    texts = [o for lang in ("en", "de", "ru") for it in clka.build_test_items(facts, lang) for o in it["options"]]
    texts += ["The cat sat on the mat.", "A man is walking.", "Nobody is walking.", "Er sagte: \"Hallo\"."] * 20
    files = train_byte_level_bpe(texts, str(root / "tok"), vocab_size=400)
    base = build_tokenizer("GPT2BPETokenizer", vocab_file=files["vocab_file"], merge_file=files["merge_file"])
    tok = EnCloneTokenizer(base)
    vocab = ((tok.vocab_size + 63) // 64) * 64
    cfg = GPTModelConfig(num_layers=1, hidden_size=32, num_attention_heads=2, vocab_size=vocab, max_sequence_length=64,
                         hidden_dropout=0.0, attention_dropout=0.0)
    seed_all(0)
    model = build_gpt_model(cfg).eval()
    ck = root / "ckpt" / "iter_0000010"
    ck.mkdir(parents=True)
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(ck))
    (ck / "prealign_meta.json").write_text(json.dumps({"model": cfg.to_dict(), "tokenizer": tok.describe(), "iteration": 10}))
    (root / "ckpt" / "latest_checkpointed_iteration.txt").write_text("10\n")
    return {"root": root, "tok": tok, "files": files, "ckpt": str(root / "ckpt"), "model": model}


def test_make_and_eval_clka(setup, capsys):
    root, files = setup["root"], setup["files"]
    out = str(root / "clka")
    assert _tool("make_clka").main(["--output-dir", out, "--facts-per-period", "8", "--num-periods", "2", "--frequencies", "1,3",
                                    "--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", files["vocab_file"],
                                    "--merge-file", files["merge_file"]]) == 0
    sched = json.load(open(os.path.join(out, "schedule.json")))
    assert [p["start_iteration"] for p in sched["periods"]] == [0, 250]
    assert sched["periods"][0]["documents"] == 4 * 1 + 4 * 3
    res_path = str(root / "res" / "clka.json")
    assert _tool("eval_clka").main(["--load", setup["ckpt"], "--test-dir", out, "--languages", "en,de,en_clone",
                                    "--period", "1", "--familiarity-text", os.path.join(out, "knowledge.jsonl"),
                                    "--control", "no-knowledge", "--output", res_path]) == 0
    res = json.load(open(res_path))
    assert set(res["results"]) == {"en", "de", "en_clone"} and res["results"]["en"]["items"] == 8
    assert res["checkpoint"]["iteration"] == 10
    assert res["control"] == "no-knowledge" and res["results"]["en"]["chance"] == 25.0
    fam = res["controls"]["familiarity"]
    assert set(fam) == {"en", "de", "en_clone"} and all(v["accuracy"] == 25.0 and v["items"] == 8 for v in fam.values())
    printed = capsys.readouterr().out
    assert "acc (len-norm)" in printed and "CONTROL RUN: no-knowledge" in printed and "familiarity" in printed


def _status(fn) -> int:
    """A tool's exit status: returned (its own errors) or raised by argparse (bad flags)."""
    try:
        return fn()
    except SystemExit as exc:
        return exc.code


def test_eval_clka_missing_checkpoint_leaves_no_result(setup, tmp_path):
    assert _status(lambda: _tool("eval_clka").main(["--load", str(tmp_path / "none"), "--test-dir",
                                                    str(setup["root"] / "clka"), "--output", str(tmp_path / "r.json")])) == 2
    assert not os.path.exists(tmp_path / "r.json")


def test_eval_perplexity_tool(setup, tmp_path, capsys):
    from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation
    from megatron_prealign.synthetic.clka import write_token_documents

    tok = setup["tok"]
    docs = [tok.tokenize("The cat sat on the mat.") + [tok.eod], tok.tokenize("A man is walking.") + [tok.eod]]
    write_token_documents(str(tmp_path / "en_valid"), docs, tok.vocab_size)
    write_token_documents(str(tmp_path / "clone_valid"), [list(tok.clone_ids(np.array(d[:-1]))) + [tok.eod] for d in docs], tok.vocab_size)
    cat = tok.encode_word("cat")
    table = AlignmentTable(languages=["en_clone"], entries=[AlignmentEntry(word="cat", count=1, ids=cat, translations={
        "en_clone": [Translation(text="cat", ids=list(map(int, tok.clone_ids(np.array(cat)))))]})],
        vocab_size=tok.vocab_size, tokenizer=tok.describe())
    table.save(str(tmp_path / "table.jsonl"))
    out = str(tmp_path / "ppl.json")
    assert _tool("eval_perplexity").main(["--load", setup["ckpt"], "--data-path", f"en={tmp_path / 'en_valid'}",
                                          "--data-path", f"en_clone={tmp_path / 'clone_valid'}", "--seq-length", "8",
                                          "--alignment-table", str(tmp_path / "table.jsonl"), "--output", out]) == 0
    res = json.load(open(out))["results"]
    n_pred = sum(len(d) - 1 for d in docs)
    assert res["en"]["overall"]["tokens"] == n_pred and res["en_clone"]["overall"]["tokens"] == n_pred
    assert res["en"]["seen"]["words"] == 1 and res["en_clone"]["seen"]["words"] == 1
    assert "unseen ppl" in capsys.readouterr().out


def test_eval_xnli_tool(setup, tmp_path):
    from megatron_prealign.eval.nli_formats import XNLI_TSV_COLUMNS

    train = tmp_path / "train.jsonl"
    rows = [{"sentence1": "A man is walking.", "sentence2": s, "gold_label": g}
            for s, g in [("A man moves.", "entailment"), ("Nobody is walking.", "contradiction"), ("He is late.", "neutral"), ("x", "-")]]
    train.write_text("\n".join(json.dumps(r) for r in rows * 4) + "\n")
    lines = ["\t".join(XNLI_TSV_COLUMNS)]
    for lang in ("en", "de"):
        for lab in ("entailment", "neutral", "contradiction"):
            row = dict.fromkeys(XNLI_TSV_COLUMNS, "")
            row.update(language=lang, gold_label=lab, sentence1='Er sagte: "Hallo', sentence2="The cat sat.")
            lines.append("\t".join(row[c] for c in XNLI_TSV_COLUMNS))
    test = tmp_path / "xnli.test.tsv"
    test.write_text("\n".join(lines) + "\n")
    out = str(tmp_path / "xnli.json")
    assert _tool("eval_xnli").main(["--load", setup["ckpt"], "--train-file", str(train), "--test-file", str(test),
                                    "--dev-file", str(test), "--languages", "en,de,en_clone", "--epochs", "1",
                                    "--batch-size", "4", "--hidden-dropout", "0.2", "--output", out]) == 0
    res = json.load(open(out))
    assert {k: v["examples"] for k, v in res["results"].items()} == {"en": 3, "de": 3, "en_clone": 3}
    # fine-tuned with dropout: --hidden-dropout given, attention dropout the checkpoint's (0.0)
    assert res["dropout"] == {"hidden": 0.2, "attention": 0.0}
    assert res["data"]["train"]["no_consensus"] == 4 and res["finetune"]["steps"] == 3


def test_eval_mixed_script_tool(setup, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The cat sat\nA man is\n")
    out = str(tmp_path / "mixed.json")
    assert _tool("eval_mixed_script").main(["--load", setup["ckpt"], "--prompts", str(prompts), "--max-new-tokens", "4",
                                            "--languages", "en_clone,ru", "--output", out]) == 0
    res = json.load(open(out))["results"]
    assert res["en_clone"]["generations"] == 2 and 0.0 <= res["en_clone"]["ratio"] <= 100.0
    assert res["ru"]["method"] == "Unicode script of ru"


def test_eval_similarity_and_summary_tools(setup, tmp_path, capsys):
    from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation

    tok = setup["tok"]
    entries = []
    for w in ("cat", "man", "mat", "walking"):
        ids = tok.encode_word(w)
        entries.append(AlignmentEntry(word=w, count=1, ids=ids, translations={"en_clone": [Translation(text=w, ids=tok.encode_word_clone(w))]}))
    AlignmentTable(languages=["en_clone"], entries=entries, vocab_size=tok.vocab_size, tokenizer=tok.describe()).save(str(tmp_path / "t.jsonl"))
    out = str(tmp_path / "run" / "sim.json")
    assert _tool("eval_similarity").main(["--load", setup["ckpt"], "--iterations", "all", "--alignment-table", str(tmp_path / "t.jsonl"),
                                          "--num-batches", "2", "--words-per-batch", "2", "--seq-length", "16",
                                          "--output", out, "--plot", str(tmp_path / "sim.png")]) == 0
    pts = json.load(open(out))["results"]
    assert [p["iteration"] for p in pts] == [10] and set(pts[0]["similarity"]) >= {"emb", "layer1", "out"}
    assert {"emb/centred_cosine", "layer1/raw_cosine", "out/norm_ratio"} <= set(pts[0]["similarity"])
    assert (tmp_path / "sim.png").exists() and (tmp_path / "sim_centred.png").exists()
    assert "centred cos" in capsys.readouterr().out
    capsys.readouterr()
    md = str(tmp_path / "table.md")
    assert _tool("summarize_results").main(["--run", f"R={tmp_path / 'run'}", "--layout", "synthetic", "--output", md]) == 0
    assert open(md).read().splitlines()[2] == "| R | - | - | - | - | - | - |"


def test_oracle_realign_tool(setup, tmp_path, capsys):
    """Clone rows become English rows + the model's offset (hand-computed); nothing else moves;
    the result loads in the evaluation tools; the input checkpoint is never written."""
    import torch

    from megatron_prealign.eval.loading import load_checkpoint_for_eval

    tok, ck = setup["tok"], setup["ckpt"]
    before = {k: v.detach().clone() for k, v in load_checkpoint_for_eval(ck)[0].state_dict().items() if torch.is_tensor(v)}
    mtime = os.path.getmtime(os.path.join(ck, "iter_0000010"))
    out = str(tmp_path / "oracle")
    assert _tool("oracle_realign").main(["--load", ck, "--save", out]) == 0
    assert "clone rows re-aligned" in capsys.readouterr().out
    after_model, _, meta, _ = load_checkpoint_for_eval(out)
    after = {k: v for k, v in after_model.state_dict().items() if torch.is_tensor(v)}
    assert meta["iteration"] == 10 and meta["oracle_realign"]["alpha"] == 1.0
    key = "embedding.word_embeddings.weight"
    V = tok.base_vocab_size
    eng = [i for i in range(V) if i not in set(tok.special_ids)]
    w0, w1 = before[key].double(), after[key].double()
    offset = w0[[i + V for i in eng]].mean(0) - w0[eng].mean(0)
    for i in eng:
        assert torch.allclose(w1[i + V], w0[i] + offset, atol=1e-5)
    changed = set(i + V for i in eng)
    for r in range(w0.shape[0]):
        if r not in changed:
            assert torch.equal(w1[r], w0[r])
    assert all(torch.equal(before[k], after[k]) for k in before if k != key)
    assert os.path.getmtime(os.path.join(ck, "iter_0000010")) == mtime
    # the re-aligned checkpoint evaluates
    res, files = str(tmp_path / "clka.json"), setup["files"]
    assert _tool("make_clka").main(["--output-dir", str(tmp_path / "clka"), "--facts-per-period", "4", "--languages", "en",
                                    "--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", files["vocab_file"],
                                    "--merge-file", files["merge_file"]]) == 0
    assert _tool("eval_clka").main(["--load", out, "--test-dir", str(tmp_path / "clka"), "--languages", "en_clone",
                                    "--control", "oracle-realign", "--output", res]) == 0
    assert json.load(open(res))["control"] == "oracle-realign"
    # half-way, and refusals
    assert _tool("oracle_realign").main(["--load", ck, "--save", str(tmp_path / "half"), "--alpha", "0.5"]) == 0
    w_half = load_checkpoint_for_eval(str(tmp_path / "half"))[0].state_dict()[key].double()
    i = eng[3]
    assert torch.allclose(w_half[i + V], 0.5 * w0[i + V] + 0.5 * (w0[i] + offset), atol=1e-5)
    for bad in (["--save", ck], ["--save", out], ["--save", str(tmp_path / "x"), "--alpha", "2"]):
        assert _status(lambda: _tool("oracle_realign").main(["--load", ck] + bad)) == 2


def test_oracle_realign_untied_both_matrices(single_process_parallel_state):
    import torch

    from megatron_prealign.eval.oracle import OracleConfig, aligned_english_ids, oracle_realign
    from megatron_prealign.platform import seed_all
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model

    seed_all(0)
    V = 10
    m = build_gpt_model(GPTModelConfig(num_layers=1, hidden_size=8, num_attention_heads=2, vocab_size=2 * V + 4,
                                       max_sequence_length=8, untie_embeddings_and_output_weights=True))
    ids = aligned_english_ids(V, [0])
    assert ids == list(range(1, V))
    w_in, w_out = m.embedding.word_embeddings.weight.detach().clone(), m.output_layer.weight.detach().clone()
    rep = oracle_realign(m, OracleConfig(base_vocab_size=V, english_ids=ids))
    assert set(rep) == {"input_embedding", "output_layer"}
    for w0, w1 in ((w_in, m.embedding.word_embeddings.weight), (w_out, m.output_layer.weight)):
        off = w0[V + 1:2 * V].double().mean(0) - w0[1:V].double().mean(0)
        assert torch.allclose(w1[V + 1:2 * V].double(), w0[1:V].double() + off, atol=1e-5)
        assert torch.equal(w1[:V + 1], w0[:V + 1]) and torch.equal(w1[2 * V:], w0[2 * V:])


def test_oracle_copy_makes_clone_text_score_as_english(single_process_parallel_state):
    """offset_scale 0: clone rows are the English rows, so a clone sentence gets exactly the
    English sentence's log-probabilities (what the quickstart's identity check relies on)."""
    import torch

    from megatron_prealign.eval.oracle import OracleConfig, oracle_realign
    from megatron_prealign.eval.scoring import token_logprobs
    from megatron_prealign.model.gpt import GPTModelConfig, build_gpt_model
    from megatron_prealign.platform import seed_all

    seed_all(1)
    V = 10
    m = build_gpt_model(GPTModelConfig(num_layers=2, hidden_size=16, num_attention_heads=2, vocab_size=2 * V,
                                       max_sequence_length=8, untie_embeddings_and_output_weights=True,
                                       hidden_dropout=0.0, attention_dropout=0.0)).eval()
    english = torch.tensor([[1, 4, 2, 7, 3, 9]])
    with torch.no_grad():
        assert not torch.allclose(token_logprobs(m, english), token_logprobs(m, english + V), atol=1e-3)
        rep = oracle_realign(m, OracleConfig(base_vocab_size=V, english_ids=list(range(V)), offset_scale=0.0))
        assert torch.equal(m.embedding.word_embeddings.weight[V:], m.embedding.word_embeddings.weight[:V])
        assert rep["output_layer"]["offset_scale"] == 0.0
        torch.testing.assert_close(token_logprobs(m, english + V), token_logprobs(m, english), rtol=0, atol=1e-6)
        # the output layer on its own scale: input rows copied, output rows keep the full offset
        m2 = build_gpt_model(GPTModelConfig(num_layers=1, hidden_size=8, num_attention_heads=2, vocab_size=2 * V,
                                            max_sequence_length=8, untie_embeddings_and_output_weights=True))
        w0 = m2.output_layer.weight.detach().double().clone()
        rep = oracle_realign(m2, OracleConfig(base_vocab_size=V, english_ids=list(range(V)), offset_scale=0.0,
                                              output_offset_scale=1.0))
        assert rep["input_embedding"]["offset_scale"] == 0.0 and rep["output_layer"]["offset_scale"] == 1.0
        assert torch.equal(m2.embedding.word_embeddings.weight[V:], m2.embedding.word_embeddings.weight[:V])
        off = w0[V:].mean(0) - w0[:V].mean(0)
        assert torch.allclose(m2.output_layer.weight[V:].double(), w0[:V] + off, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Hostile input (issue 11): wrong tables, broken data, single-language test files


def _other_tokenizer_table(setup, tmp_path):
    """A table whose ids fit the checkpoint's vocabulary but which was built for another tokenizer."""
    from megatron_prealign.alignment import AlignmentEntry, AlignmentTable, Translation
    from megatron_prealign.tokenizer import build_tokenizer

    tok = setup["tok"]
    other = build_tokenizer("NullTokenizer", vocab_size=50)
    entries = [AlignmentEntry(word=w, count=1, ids=tok.encode_word(w),
                              translations={"en_clone": [Translation(text=w, ids=tok.encode_word_clone(w))]})
               for w in ("cat", "man", "mat", "walking")]
    path = str(tmp_path / "other.jsonl")
    AlignmentTable(languages=["en_clone"], entries=entries, vocab_size=tok.vocab_size, tokenizer=other.describe()).save(path)
    return path


def _exit_message(capsys, fn):
    assert _status(fn) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    return err[-1]


def test_eval_perplexity_and_similarity_refuse_a_table_of_another_tokenizer(setup, tmp_path, capsys):
    from megatron_prealign.synthetic.clka import write_token_documents

    tok = setup["tok"]
    table = _other_tokenizer_table(setup, tmp_path)
    write_token_documents(str(tmp_path / "en_valid"), [tok.tokenize("The cat sat on the mat.") + [tok.eod]], tok.vocab_size)
    msg = _exit_message(capsys, lambda: _tool("eval_perplexity").main(
        ["--load", setup["ckpt"], "--data-path", f"en={tmp_path / 'en_valid'}", "--seq-length", "8",
         "--alignment-table", table, "--output", str(tmp_path / "ppl.json")]))
    assert f"--alignment-table {table}: was built for another tokenizer (NullTokenizer, vocab 51)" in msg
    msg = _exit_message(capsys, lambda: _tool("eval_similarity").main(
        ["--load", setup["ckpt"], "--alignment-table", table, "--num-batches", "1", "--words-per-batch", "2",
         "--seq-length", "16", "--output", str(tmp_path / "sim.json")]))
    assert f"--alignment-table {table}: was built for another tokenizer (NullTokenizer, vocab 51)" in msg
    assert not (tmp_path / "ppl.json").exists() and not (tmp_path / "sim.json").exists()


def test_eval_perplexity_validates_its_data(setup, tmp_path, capsys):
    from megatron_prealign.synthetic.clka import write_token_documents

    tok = setup["tok"]
    docs = [tok.tokenize("The cat sat on the mat.") + [tok.eod], tok.tokenize("A man is walking.") + [tok.eod]]

    def run(prefix):
        return lambda: _tool("eval_perplexity").main(["--load", setup["ckpt"], "--data-path", f"en={prefix}",
                                                      "--seq-length", "8", "--output", str(tmp_path / "ppl.json")])

    # ids of another tokenizer: >= the tokenizer's vocabulary (here even >= the padded vocabulary)
    big = str(tmp_path / "big")
    write_token_documents(big, [docs[0], [5, 7, 60000, tok.eod]], 70000)
    msg = _exit_message(capsys, run(big))
    assert f"big.bin (--data-path en): token id 60000 >= the tokenizer's vocabulary size {tok.vocab_size}" in msg
    # a truncated .bin
    short = str(tmp_path / "short")
    write_token_documents(short, docs, tok.vocab_size)
    with open(short + ".bin", "r+b") as f:
        f.truncate(os.path.getsize(short + ".bin") - 2)
    assert "short.bin: size" in _exit_message(capsys, run(short))
    assert not (tmp_path / "ppl.json").exists()


def test_eval_xnli_refuses_a_single_language_test_file_for_other_languages(setup, tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    rows = [{"premise": "A man is walking.", "hypothesis": s, "label": g}
            for s, g in [("A man moves.", 0), ("He is late.", 1), ("Nobody is walking.", 2)]]
    train.write_text("\n".join(json.dumps(r) for r in rows * 4) + "\n")
    test = tmp_path / "test_en.jsonl"  # an English-only file without a language field
    test.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    msg = _exit_message(capsys, lambda: _tool("eval_xnli").main(
        ["--load", setup["ckpt"], "--train-file", str(train), "--test-file", str(test), "--languages", "en,de,zh",
         "--epochs", "1", "--batch-size", "4", "--output", str(tmp_path / "xnli.json")]))
    assert msg.endswith(f"--test-file {test}: no test examples for language(s) de, zh; languages in the file: en "
                        f"(no language column; assumed English) (pass --languages, or --extra-test LANG=PATH)")
    assert not (tmp_path / "xnli.json").exists()
    # an XNLI TSV holding only en and de rows, asked for ru
    from megatron_prealign.eval.nli_formats import XNLI_TSV_COLUMNS

    lines = ["\t".join(XNLI_TSV_COLUMNS)]
    for lang in ("en", "de"):
        row = dict.fromkeys(XNLI_TSV_COLUMNS, "")
        row.update(language=lang, gold_label="neutral", sentence1="A man.", sentence2="The cat.")
        lines.append("\t".join(row[c] for c in XNLI_TSV_COLUMNS))
    tsv = tmp_path / "xnli.test.tsv"
    tsv.write_text("\n".join(lines) + "\n")
    msg = _exit_message(capsys, lambda: _tool("eval_xnli").main(
        ["--load", setup["ckpt"], "--train-file", str(train), "--test-file", str(tsv), "--languages", "en,de,ru",
         "--epochs", "1", "--batch-size", "4", "--output", str(tmp_path / "xnli.json")]))
    assert "no test examples for language(s) ru; languages in the file: de, en" in msg
