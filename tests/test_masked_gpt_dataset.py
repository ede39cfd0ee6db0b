"""MaskedGPTDataset against a naive reference built from the raw IndexedDataset token stream."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from megatron.core.datasets.blended_dataset import BlendedDataset
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder
from megatron.core.datasets.utils import Split

from megatron_prealign.data.indexed import IndexedDatasetError
from megatron_prealign.data.masked_gpt_dataset import (
    MaskedGPTDataset,
    MaskedGPTDatasetConfig,
    build_train_valid_test_datasets,
    masked_gpt_dataset_config,
)

EOD, PAD, VOCAB = 0, 1, 1000


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """GPTDataset builds masks with tiny torch ops per sample; on a loaded 2-core machine the
    intra-op thread pool turns 150 samples into seconds of spinning."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyTokenizer:
    """What GPTDataset needs from a tokenizer (ids 0 = EOD and 1 = pad, distinct)."""

    vocab_size = VOCAB
    eod = EOD
    pad = PAD

    def __init__(self) -> None:
        self.unique_identifiers = OrderedDict(cls="TinyTokenizer")


def write_dataset(prefix, docs, dtype):
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for doc in docs:
        builder.add_document(np.asarray(doc), [len(doc)])
    builder.finalize(prefix + ".idx")


def make_corpus(tmp_path, name, n_docs, seed, with_mask=True, mask_lengths_delta=0):
    rng = np.random.default_rng(seed)
    docs, masks = [], []
    for _ in range(n_docs):
        n = int(rng.integers(3, 40))
        doc = rng.integers(2, VOCAB, size=n)
        doc[-1] = EOD
        docs.append(doc)
        m = (rng.random(n) > 0.3).astype(np.uint8)
        masks.append(m)
    prefix = str(tmp_path / f"{name}_text_document")
    write_dataset(prefix, docs, np.uint16)
    if with_mask:
        if mask_lengths_delta:
            masks[3] = np.ones(len(masks[3]) + mask_lengths_delta, dtype=np.uint8)
        write_dataset(prefix + "_lossmask", masks, np.uint8)
    return prefix, docs, masks


def config(tmp_path, **kw):
    args = dict(
        random_seed=1234,
        sequence_length=16,
        blend=(["unused"], None),
        split="1,0,0",
        path_to_cache=str(tmp_path / "cache"),
        tokenizer=TinyTokenizer(),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
    )
    args.update(kw)
    return MaskedGPTDatasetConfig(**args)


def build(cls, prefix, cfg, num_samples=None):
    low = cls.build_low_level_dataset(prefix, cfg)
    indices = np.arange(len(low.sequence_lengths), dtype=np.int32)
    return cls(low, prefix, indices, num_samples, Split.train, cfg)


def reference_sample(ds, idx, docs, masks, cfg):
    """Rebuild sample ``idx`` from the flat token stream of the documents in document-index order."""
    order = [int(d) for d in ds.document_index]
    stream = np.concatenate([docs[d] for d in order]).astype(np.int64)
    mstream = np.concatenate([masks[d] for d in order]) if masks is not None else np.ones_like(stream)
    starts = np.concatenate([[0], np.cumsum([len(docs[d]) for d in order])])
    j = int(ds.shuffle_index[idx])
    beg, off = (int(x) for x in ds.sample_index[j])
    start = starts[beg] + off
    extra = int(cfg.add_extra_token_to_sequence)
    want = cfg.sequence_length + extra
    span = stream[start : start + want]
    mspan = mstream[start : start + want]
    pad_n = want - len(span)
    span = np.concatenate([span, np.full(pad_n, PAD)])
    mspan = np.concatenate([mspan, np.ones(pad_n, dtype=mspan.dtype)])
    if extra:
        tokens, labels, stored = span[:-1], span[1:], mspan[1:]
    else:
        tokens = span
        labels = np.concatenate([span[1:], [PAD]])
        stored = np.concatenate([mspan[1:], [1]])
    loss = np.ones(cfg.sequence_length, dtype=np.float32)
    if cfg.eod_mask_loss:
        loss[tokens == EOD] = 0
    loss[labels == PAD] = 0
    loss *= stored != 0
    # GPTDataset maps pad ids to 0 so that the embedding can look them up
    tokens, labels = np.where(tokens == PAD, 0, tokens), np.where(labels == PAD, 0, labels)
    return tokens, labels, loss


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"eod_mask_loss": True},
        {"add_extra_token_to_sequence": False},
    ],
    ids=["cached-masks", "eod-mask-loss", "no-extra-token"],
)
def test_samples_match_naive_reference(tmp_path, kw):
    prefix, docs, masks = make_corpus(tmp_path, "cs", 60, seed=0)
    cfg = config(tmp_path, **kw)
    ds = build(MaskedGPTDataset, prefix, cfg, num_samples=150)  # > 1 epoch: repeated documents
    plain = build(GPTDataset, prefix, cfg, num_samples=150)
    assert ds.mask_dataset is not None
    assert len(ds) == len(plain) >= 150
    spans_docs = sum(int(ds.sample_index[i][0] != ds.sample_index[i + 1][0]) for i in range(len(ds)))
    assert spans_docs > len(ds) // 2, "the fixture must exercise samples spanning documents"
    zeroed_by_mask = 0
    for i in range(len(ds)):
        got, base = ds[i], plain[i]
        tokens, labels, loss = reference_sample(ds, i, docs, masks, cfg)
        np.testing.assert_array_equal(got["tokens"].numpy(), tokens)
        np.testing.assert_array_equal(got["labels"].numpy(), labels)
        np.testing.assert_array_equal(got["loss_mask"].numpy(), loss)
        # Same sample as GPTDataset, whose loss mask is only ever narrowed.
        np.testing.assert_array_equal(got["tokens"].numpy(), base["tokens"].numpy())
        np.testing.assert_array_equal(got["position_ids"].numpy(), base["position_ids"].numpy())
        assert torch.equal(got["attention_mask"], base["attention_mask"])
        assert bool(torch.all(got["loss_mask"] <= base["loss_mask"]))
        zeroed_by_mask += int((base["loss_mask"] - got["loss_mask"]).sum())
    assert zeroed_by_mask > 0


def test_cached_loss_mask_is_not_mutated(tmp_path):
    prefix, docs, masks = make_corpus(tmp_path, "cs", 40, seed=1)
    cfg = config(tmp_path)
    ds = build(MaskedGPTDataset, prefix, cfg)
    assert ds.masks_and_position_ids_are_cacheable
    first = ds[0]["loss_mask"]
    assert ds.masks_and_position_ids_are_cached
    cached = ds.cached_loss_mask
    assert first.data_ptr() != cached.data_ptr()
    for i in range(len(ds)):
        out = ds[i]["loss_mask"]
        assert out.data_ptr() != cached.data_ptr()
        out.zero_()  # a consumer writing into its sample must not reach the cache either
    assert ds.cached_loss_mask is cached
    assert torch.equal(cached, torch.ones_like(cached))
    # and the samples still come out right after all that
    _, _, loss = reference_sample(ds, 5, docs, masks, cfg)
    np.testing.assert_array_equal(ds[5]["loss_mask"].numpy(), loss)


def test_without_mask_dataset_equals_gpt_dataset(tmp_path):
    prefix, _, _ = make_corpus(tmp_path, "plain", 30, seed=2, with_mask=False)
    cfg = config(tmp_path, eod_mask_loss=True)
    ds = build(MaskedGPTDataset, prefix, cfg)
    plain = build(GPTDataset, prefix, cfg)
    assert ds.mask_dataset is None
    for i in range(len(ds)):
        a, b = ds[i], plain[i]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_blended_with_unmasked_dataset(tmp_path, single_process_parallel_state):
    # megatron-core 0.16 BlendedDataset calls torch.distributed.get_rank() when caching indices
    masked, docs, masks = make_corpus(tmp_path, "en_cs", 50, seed=3)
    plain, pdocs, _ = make_corpus(tmp_path, "de", 50, seed=4, with_mask=False)
    cfg = masked_gpt_dataset_config(
        TinyTokenizer(), seq_length=16, seed=1234,
        blend=([masked, plain], [0.6, 0.4]), split="1,0,0",
        data_cache_path=str(tmp_path / "cache"),
    )
    train, valid, test = build_train_valid_test_datasets(cfg, [200, 0, 0])
    assert valid is None and test is None
    assert isinstance(train, BlendedDataset) and len(train) == 200
    subsets = train.datasets
    assert [type(d) for d in subsets] == [MaskedGPTDataset, MaskedGPTDataset]
    assert subsets[0].mask_dataset is not None and subsets[1].mask_dataset is None
    seen = set()
    for i in range(len(train)):
        sample = train[i]
        d = int(train.dataset_index[i])
        j = int(train.dataset_sample_index[i])
        assert int(sample["dataset_id"]) == d
        seen.add(d)
        ref_docs, ref_masks = (docs, masks) if d == 0 else (pdocs, None)
        tokens, labels, loss = reference_sample(subsets[d], j, ref_docs, ref_masks, subsets[d].config)
        np.testing.assert_array_equal(sample["tokens"].numpy(), tokens)
        np.testing.assert_array_equal(sample["labels"].numpy(), labels)
        np.testing.assert_array_equal(sample["loss_mask"].numpy(), loss)
    assert seen == {0, 1}


def test_mismatched_mask_lengths_one_line_error(tmp_path):
    prefix, _, _ = make_corpus(tmp_path, "bad", 10, seed=5, mask_lengths_delta=2)
    cfg = config(tmp_path)
    with pytest.raises(IndexedDatasetError) as err:
        build(MaskedGPTDataset, prefix, cfg)
    msg = str(err.value)
    assert "\n" not in msg and "sequence 3" in msg and "_lossmask.idx" in msg


def test_mask_with_other_document_count_is_rejected(tmp_path):
    prefix, docs, masks = make_corpus(tmp_path, "short", 10, seed=6, with_mask=False)
    write_dataset(prefix + "_lossmask", masks[:-1], np.uint8)
    with pytest.raises(IndexedDatasetError, match="9 sequences.* has 10"):
        build(MaskedGPTDataset, prefix, config(tmp_path))


def test_required_mask_missing(tmp_path):
    prefix, _, _ = make_corpus(tmp_path, "nomask", 10, seed=7, with_mask=False)
    with pytest.raises(IndexedDatasetError, match="no loss-mask dataset"):
        build(MaskedGPTDataset, prefix, config(tmp_path, require_loss_mask=True))


def test_corrupt_text_idx_is_a_one_line_error_through_the_builder(tmp_path):
    prefix, _, _ = make_corpus(tmp_path, "trunc", 10, seed=8)
    with open(prefix + ".idx", "r+b") as f:
        f.truncate(60)
    cfg = masked_gpt_dataset_config(
        TinyTokenizer(), seq_length=16, seed=1, blend=([prefix], None), split="1,0,0",
        data_cache_path=str(tmp_path / "cache"),
    )
    with pytest.raises(IndexedDatasetError) as err:
        build_train_valid_test_datasets(cfg, [10, 0, 0])
    assert "truncated" in str(err.value) and prefix + ".idx" in str(err.value)
    assert "\n" not in str(err.value)


def test_plain_gpt_dataset_config_is_accepted(tmp_path):
    prefix, docs, masks = make_corpus(tmp_path, "gc", 20, seed=9)
    cfg = GPTDatasetConfig(
        random_seed=1, sequence_length=16, split="1,0,0", blend=([prefix], None),
        path_to_cache=str(tmp_path / "cache"), tokenizer=TinyTokenizer(),
        reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
    )
    ds = build(MaskedGPTDataset, prefix, cfg)
    assert isinstance(ds.mask_dataset, IndexedDataset)
    _, _, loss = reference_sample(ds, 0, docs, masks, cfg)
    np.testing.assert_array_equal(ds[0]["loss_mask"].numpy(), loss)
