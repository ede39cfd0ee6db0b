"""The alignment stream of a job: startup checks, resumable position, probe microbatch."""

from __future__ import annotations

import pytest
import torch

from megatron_prealign.tokenizer import build_tokenizer
from megatron_prealign.training.alignment import build_alignment_stream


@pytest.fixture()
def tok():
    return build_tokenizer("NullTokenizer", vocab_size=1000)


def _build(path, tok, words=4, mbs=2, seq=16, model_vocab=1024, rank=0, size=1):
    return build_alignment_stream(str(path), tok, model_vocab, words, mbs, seq, 1, None, rank, size)


def test_stream_resumes_at_its_position(tmp_path, tok):
    from training_helpers import write_table

    write_table(str(tmp_path / "t.jsonl"), tok, 40, offset=500)
    a = _build(tmp_path / "t.jsonl", tok)
    first = [b["tokens"].tolist() for b in a.take(3)]
    assert a.state_dict() == {"microbatch_index": 3}
    nxt = next(a.take(1))["tokens"].tolist()
    b = _build(tmp_path / "t.jsonl", tok)
    b.load_state_dict({"microbatch_index": 3})
    assert next(b.take(1))["tokens"].tolist() == nxt
    assert first[0] != first[1]
    # the probe is a fixed microbatch (index 0), independent of the position
    assert a.probe()["tokens"].tolist() == first[0]
    # each word of the probe has its translation (id + 500) in the same microbatch
    probe = a.probe()
    valid = torch.arange(probe["tokens"].shape[1]) < probe["lengths"].unsqueeze(1)
    toks = probe["tokens"][valid].tolist()
    assert all((t + 500) in toks for t in toks if t < 500)


def test_ids_outside_vocabulary_name_the_flag(tmp_path, tok):
    from training_helpers import write_table

    write_table(str(tmp_path / "bad.jsonl"), tok, 10, offset=995)  # ids up to 1004 >= 1001
    with pytest.raises(ValueError, match=r"--alignment-table: .*bad.jsonl.*id 1001") as err:
        _build(tmp_path / "bad.jsonl", tok)
    assert "\n" not in str(err.value)


def test_table_of_another_tokenizer_is_rejected(tmp_path, tok):
    from training_helpers import write_table

    other = build_tokenizer("NullTokenizer", vocab_size=2000)
    write_table(str(tmp_path / "other.jsonl"), other, 10, offset=500)
    with pytest.raises(ValueError, match="--alignment-table"):
        _build(tmp_path / "other.jsonl", tok)


def test_microbatch_without_positive_pair_fails_at_startup(tmp_path, tok):
    from training_helpers import write_table

    write_table(str(tmp_path / "long.jsonl"), tok, 10, offset=500, word_len=3)
    _build(tmp_path / "long.jsonl", tok, words=2, mbs=1, seq=3)  # one word per row: 3 tokens fit
    with pytest.raises(ValueError, match="--alignment-table .*positive pair"):  # words longer than --seq-length
        _build(tmp_path / "long.jsonl", tok, words=2, mbs=1, seq=2)
