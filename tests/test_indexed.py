"""Validated opening and all-or-nothing writing of Megatron .bin/.idx datasets."""

from __future__ import annotations

import os

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

from megatron_prealign.data.indexed import (
    IndexedDatasetError,
    IndexedDatasetWriter,
    check_indexed_dataset,
    document_prefix,
    loss_mask_prefix,
    open_indexed_dataset,
    read_index,
    write_documents,
    write_index,
)

DOCS = [np.array([5, 6, 7]), np.array([8]), np.array([9, 10, 11, 12])]


def megatron_write(prefix, docs=DOCS, dtype=np.uint16):
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for d in docs:
        builder.add_document(d, [len(d)])
    builder.finalize(prefix + ".idx")
    return prefix


def test_naming():
    assert document_prefix("out/en", "text") == "out/en_text_document"
    assert loss_mask_prefix("out/en_text_document") == "out/en_text_document_lossmask"


def test_check_matches_megatron_reader(tmp_path):
    prefix = megatron_write(str(tmp_path / "ok"))
    header = check_indexed_dataset(prefix)
    ds = IndexedDataset(prefix)
    assert header.dtype == ds.index.dtype == np.uint16
    assert header.sequence_count == len(ds) == 3
    assert header.document_count == len(ds.document_indices) == 4
    assert not header.multimodal
    opened = open_indexed_dataset(prefix)
    assert [list(opened[i]) for i in range(3)] == [list(d) for d in DOCS]


def overwrite_start(path, data):
    with open(path, "r+b") as f:
        f.write(data)


def truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: truncate(p + ".idx", 20), r"\.idx: truncated index \(20 bytes"),
        (lambda p: truncate(p + ".idx", os.path.getsize(p + ".idx") - 3), r"\.idx: truncated or corrupt index"),
        (lambda p: overwrite_start(p + ".idx", b"NOTMEGA"), r"\.idx: not a Megatron \.idx file"),
        (lambda p: truncate(p + ".bin", 10), r"\.bin: size 10 bytes does not match its index \(16 bytes"),
        (lambda p: os.remove(p + ".bin"), r"\.bin: no such file"),
    ],
    ids=["short-header", "short-index", "bad-magic", "short-bin", "missing-bin"],
)
def test_damaged_dataset_gives_one_line_error(tmp_path, damage, match):
    prefix = megatron_write(str(tmp_path / "d"))
    damage(prefix)
    with pytest.raises(IndexedDatasetError, match=match) as err:
        open_indexed_dataset(prefix)
    assert "\n" not in str(err.value)


def test_megatron_reader_alone_gives_an_obscure_error(tmp_path):
    """Why the check exists: megatron-core's reader fails without naming the problem."""
    prefix = megatron_write(str(tmp_path / "o"))
    truncate(prefix + ".idx", os.path.getsize(prefix + ".idx") - 3)
    with pytest.raises(Exception) as err:
        IndexedDataset(prefix)
    assert "truncated" not in str(err.value)


def test_writer_commits_atomically(tmp_path):
    prefix = str(tmp_path / "w")
    writer = IndexedDatasetWriter(prefix, np.uint16)
    for d in DOCS:
        writer.add_document(d.astype(np.uint16))
    assert not os.path.exists(prefix + ".bin") and not os.path.exists(prefix + ".idx")
    writer.commit()
    assert sorted(os.listdir(tmp_path)) == ["w.bin", "w.idx"]
    assert (writer.num_documents, writer.num_tokens) == (3, 8)
    # byte-identical to what megatron-core's own builder writes
    ref = megatron_write(str(tmp_path / "ref"))
    for ext in (".bin", ".idx"):
        assert open(prefix + ext, "rb").read() == open(ref + ext, "rb").read()


def test_writer_abort_leaves_old_files_and_no_temporaries(tmp_path):
    prefix = megatron_write(str(tmp_path / "keep"))
    before = {ext: open(prefix + ext, "rb").read() for ext in (".bin", ".idx")}
    writer = IndexedDatasetWriter(prefix, np.uint16)
    writer.add_document(np.array([1, 2], dtype=np.uint16))
    writer.abort()
    writer.abort()
    assert sorted(os.listdir(tmp_path)) == ["keep.bin", "keep.idx"]
    assert {ext: open(prefix + ext, "rb").read() for ext in (".bin", ".idx")} == before


def test_megatron_builder_keeps_empty_documents_without_a_sequence(tmp_path):
    """Why preprocess_data skips empty documents: megatron-core's builder records a document with
    no sequence, so document and sequence numbering diverge."""
    prefix = str(tmp_path / "e")
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    builder.add_document(np.array([1, 2]), [2])
    builder.add_document(np.array([], dtype=np.int64), [])
    builder.add_document(np.array([3]), [1])
    builder.finalize(prefix + ".idx")
    ds = IndexedDataset(prefix)
    assert len(ds) == 2 and ds.document_indices.tolist() == [0, 1, 1, 2]
    assert check_indexed_dataset(prefix).document_count == 4


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
@pytest.mark.parametrize("multimodal", [False, True])
def test_write_index_is_byte_identical_to_megatron_builder(tmp_path, dtype, multimodal):
    """The one hand-written .idx writer (codeswitching, En-Clone) against megatron-core's."""
    import torch

    rng = np.random.default_rng(3)
    ref = str(tmp_path / "ref")
    builder = IndexedDatasetBuilder(ref + ".bin", dtype=dtype, multimodal=multimodal)
    for _ in range(7):  # documents of several sequences (sentence splitting), modes per sequence
        for _ in range(int(rng.integers(1, 4))):
            builder.add_item(torch.from_numpy(rng.integers(0, 200, size=int(rng.integers(1, 6)))), mode=int(rng.integers(0, 3)))
        builder.end_document()
    builder.finalize(ref + ".idx")
    index = read_index(ref)
    assert index.dtype == np.dtype(dtype) and (index.sequence_modes is not None) == multimodal
    write_index(str(tmp_path / "ours.idx"), dtype, index.sequence_lengths, index.document_indices, index.sequence_modes)
    assert open(tmp_path / "ours.idx", "rb").read() == open(ref + ".idx", "rb").read()


def test_write_documents_matches_megatron_builder_and_leaves_nothing_on_error(tmp_path):
    prefix = str(tmp_path / "docs")
    assert write_documents(prefix, [d.tolist() for d in DOCS], np.uint16) == (3, 8)
    ref = megatron_write(str(tmp_path / "ref"))
    for ext in (".bin", ".idx"):
        assert open(prefix + ext, "rb").read() == open(ref + ext, "rb").read()

    def failing():
        yield [1, 2]
        raise RuntimeError("reader failed")

    with pytest.raises(RuntimeError, match="reader failed"):
        write_documents(str(tmp_path / "bad"), failing(), np.uint16)
    assert sorted(os.listdir(tmp_path)) == ["docs.bin", "docs.idx", "ref.bin", "ref.idx"]
