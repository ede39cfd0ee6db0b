"""Megatron ``.bin/.idx`` datasets: naming, validated opening, and all-or-nothing writing.

The files themselves are megatron-core's (``IndexedDatasetBuilder`` writes them,
``IndexedDataset`` reads them); this module adds what the pipeline needs around them:

* Megatron-LM's output naming (``{output_prefix}_{key}_document``) and the loss-mask naming
  (``{text_prefix}_lossmask``).
* :func:`check_indexed_dataset`: validates an ``.idx`` (header, version, dtype, exact size) and
  the matching ``.bin`` size, raising a one-line :class:`IndexedDatasetError` naming the file;
  megatron-core's reader fails on such files with bare ``AssertionError``/``struct.error``
  messages or, for a short ``.bin``, only when the broken sample is read.
* :class:`IndexedDatasetWriter`: an ``IndexedDatasetBuilder`` that writes under temporary names
  and renames on :meth:`~IndexedDatasetWriter.commit` (nothing half-written on error or Ctrl-C).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Tuple, Type

import numpy as np

from megatron_prealign.platform.files import atomic_open, atomic_paths

__all__ = [
    "LOSS_MASK_SUFFIX",
    "IndexArrays",
    "IndexHeader",
    "IndexedDatasetError",
    "IndexedDatasetWriter",
    "check_indexed_dataset",
    "check_token_ids",
    "max_token_id",
    "document_prefix",
    "loss_mask_prefix",
    "check_loss_mask_record",
    "dataset_fingerprint",
    "remove_loss_mask",
    "write_documents",
    "write_loss_mask_record",
    "open_indexed_dataset",
    "read_index",
    "write_index",
]

LOSS_MASK_SUFFIX = "_lossmask"
"""Suffix of the loss-mask dataset next to a text dataset (``{text_prefix}_lossmask``)."""

_INDEX_HEADER = b"MMIDIDX\x00\x00"
_HEADER_BYTES = 9 + 8 + 1 + 8 + 8
_DTYPE_CODES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}


class IndexedDatasetError(ValueError):
    """A ``.bin/.idx`` pair is missing, truncated or inconsistent (one-line message)."""


def document_prefix(output_prefix: str, key: str) -> str:
    """Megatron-LM's dataset prefix for one JSON key: ``{output_prefix}_{key}_document``."""
    return f"{output_prefix}_{key}_document"


def loss_mask_prefix(text_prefix: str) -> str:
    """The loss-mask dataset prefix of a text dataset: ``{text_prefix}_lossmask``."""
    return text_prefix + LOSS_MASK_SUFFIX


@dataclass(frozen=True)
class IndexHeader:
    """What the ``.idx`` header of a dataset says."""

    dtype: Type[np.number]
    """Token dtype of the ``.bin`` file."""
    sequence_count: int
    """Number of sequences (one per document when written by ``tools/preprocess_data.py``)."""
    document_count: int
    """Number of entries of the document index (documents + 1)."""
    multimodal: bool
    """Whether a per-sequence mode array follows the document index."""


def check_indexed_dataset(prefix: str) -> IndexHeader:
    """Validate ``{prefix}.idx`` and ``{prefix}.bin`` without trusting either.

    Checks the header magic, version and dtype code, that the ``.idx`` size matches its counts
    exactly, that the document index ends at the sequence count, and that the ``.bin`` size is
    what the last sequence pointer and length imply.

    Raises:
        IndexedDatasetError: one line naming the file and what is wrong.
    """
    idx_path, bin_path = prefix + ".idx", prefix + ".bin"
    for path in (idx_path, bin_path):
        if not os.path.isfile(path):
            raise IndexedDatasetError(f"{path}: no such file (dataset prefix {prefix})")
    idx_size = os.path.getsize(idx_path)
    with open(idx_path, "rb") as f:
        head = f.read(_HEADER_BYTES)
    if len(head) < _HEADER_BYTES:
        raise IndexedDatasetError(f"{idx_path}: truncated index ({idx_size} bytes, header needs {_HEADER_BYTES})")
    if head[:9] != _INDEX_HEADER:
        raise IndexedDatasetError(f"{idx_path}: not a Megatron .idx file (bad magic {head[:9]!r})")
    (version,) = struct.unpack("<Q", head[9:17])
    if version != 1:
        raise IndexedDatasetError(f"{idx_path}: unsupported .idx version {version}")
    code = head[17]
    if code not in _DTYPE_CODES:
        raise IndexedDatasetError(f"{idx_path}: unknown dtype code {code}")
    dtype = _DTYPE_CODES[code]
    sequence_count, document_count = struct.unpack("<QQ", head[18:34])
    plain = _HEADER_BYTES + 12 * sequence_count + 8 * document_count
    if idx_size == plain:
        multimodal = False
    elif idx_size == plain + sequence_count:
        multimodal = True
    else:
        raise IndexedDatasetError(
            f"{idx_path}: truncated or corrupt index ({idx_size} bytes; {sequence_count} sequences and "
            f"{document_count} document entries need {plain})"
        )
    if document_count < 1:
        raise IndexedDatasetError(f"{idx_path}: corrupt index (empty document index)")
    index = np.memmap(idx_path, mode="r", dtype=np.uint8)
    try:
        doc_offset = _HEADER_BYTES + 12 * sequence_count
        docs = np.frombuffer(index, dtype=np.int64, count=document_count, offset=doc_offset)
        if docs[0] != 0 or docs[-1] != sequence_count:
            raise IndexedDatasetError(
                f"{idx_path}: corrupt document index (starts at {docs[0]}, ends at {docs[-1]}, "
                f"expected 0 and {sequence_count})"
            )
        bin_size = os.path.getsize(bin_path)
        itemsize = np.dtype(dtype).itemsize
        lengths = np.frombuffer(index, dtype=np.int32, count=sequence_count, offset=_HEADER_BYTES)
        pointers = np.frombuffer(index, dtype=np.int64, count=sequence_count, offset=_HEADER_BYTES + 4 * sequence_count)
        # Every sequence, not only the last: an edited length in the middle would otherwise make
        # megatron-core read the wrong tokens (or drop some) without a word. O(sequences), numpy.
        if sequence_count:
            if int(lengths.min()) < 0:
                bad = int(np.flatnonzero(lengths < 0)[0])
                raise IndexedDatasetError(f"{idx_path}: corrupt index (sequence {bad} has negative length {lengths[bad]})")
            ends = np.cumsum(lengths, dtype=np.int64) * itemsize
            starts = np.concatenate(([0], ends[:-1]))
            if not np.array_equal(starts, pointers):
                bad = int(np.flatnonzero(starts != pointers)[0])
                raise IndexedDatasetError(
                    f"{idx_path}: corrupt index (sequence {bad} starts at byte {pointers[bad]}, but the lengths "
                    f"before it sum to {starts[bad]} bytes)"
                )
            expected = int(ends[-1])
        else:
            expected = 0
        if bin_size != expected:
            raise IndexedDatasetError(
                f"{bin_path}: size {bin_size} bytes does not match its index ({expected} bytes expected from the "
                f"sequence lengths); truncated or from another run"
            )
    finally:
        del index
    return IndexHeader(dtype, int(sequence_count), int(document_count), multimodal)


@dataclass(frozen=True)
class IndexArrays:
    """The arrays of a validated ``.idx`` (read-only views of a memory map)."""

    dtype: np.dtype
    """Token dtype of the ``.bin`` file."""
    sequence_lengths: np.ndarray
    """int32, tokens per sequence."""
    sequence_pointers: np.ndarray
    """int64, byte offset of each sequence in the ``.bin`` (contiguous: checked)."""
    document_indices: np.ndarray
    """int64, sequence index where each document starts, then the sequence count."""
    sequence_modes: Optional[np.ndarray]
    """int8 per sequence for multimodal datasets, else ``None``."""


def read_index(prefix: str) -> IndexArrays:
    """Validate ``{prefix}.bin/.idx`` (:func:`check_indexed_dataset`) and map the index arrays.

    Raises:
        IndexedDatasetError: the files are missing or inconsistent (one line).
    """
    header = check_indexed_dataset(prefix)
    n_seq, n_doc = header.sequence_count, header.document_count
    mm = np.memmap(prefix + ".idx", mode="r", dtype=np.uint8)
    base = _HEADER_BYTES + 12 * n_seq + 8 * n_doc
    return IndexArrays(
        np.dtype(header.dtype),
        np.frombuffer(mm, dtype=np.int32, count=n_seq, offset=_HEADER_BYTES),
        np.frombuffer(mm, dtype=np.int64, count=n_seq, offset=_HEADER_BYTES + 4 * n_seq),
        np.frombuffer(mm, dtype=np.int64, count=n_doc, offset=_HEADER_BYTES + 12 * n_seq),
        np.frombuffer(mm, dtype=np.int8, count=n_seq, offset=base) if header.multimodal else None,
    )


def write_index(
    idx_path: str,
    dtype: Type[np.number],
    sequence_lengths: np.ndarray,
    document_indices: np.ndarray,
    sequence_modes: Optional[np.ndarray] = None,
) -> None:
    """Write an ``.idx`` for a ``.bin`` of contiguous sequences (written by the caller).

    The bytes are those of megatron-core's ``IndexedDatasetBuilder.finalize`` for the same
    arrays (tests compare them); the pointers are computed with numpy, not a Python loop, so
    rewriting a corpus's index (codeswitching, En-Clone) takes O(sequences) vectorised time.
    ``idx_path`` is written as given: callers write under a temporary name
    (:func:`megatron_prealign.platform.files.atomic_paths`).

    Args:
        idx_path: the file to write.
        dtype: element dtype of the ``.bin``.
        sequence_lengths: elements per sequence.
        document_indices: sequence index of each document start, then the sequence count.
        sequence_modes: int8 per sequence (multimodal datasets) or ``None``.
    """
    lengths = np.ascontiguousarray(sequence_lengths, dtype=np.int32)
    pointers = np.zeros(lengths.size, dtype=np.int64)
    if lengths.size > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * np.dtype(dtype).itemsize, out=pointers[1:])
    code = next(c for c, d in _DTYPE_CODES.items() if np.dtype(d) == np.dtype(dtype))
    with open(idx_path, "wb") as f:
        f.write(_INDEX_HEADER + struct.pack("<QBQQ", 1, code, lengths.size, len(document_indices)))
        f.write(lengths.tobytes())
        f.write(pointers.tobytes())
        f.write(np.ascontiguousarray(document_indices, dtype=np.int64).tobytes())
        if sequence_modes is not None:
            f.write(np.ascontiguousarray(sequence_modes, dtype=np.int8).tobytes())


def max_token_id(prefix: str, chunk_elements: int = 1 << 24) -> Optional[int]:
    """Largest value in ``{prefix}.bin`` (``None`` when empty), read in bounded chunks.

    Memory is ``chunk_elements`` elements whatever the file size; time is one sequential read.
    Call :func:`check_indexed_dataset` first (the dtype comes from the ``.idx``).
    """
    header = check_indexed_dataset(prefix)
    if not os.path.getsize(prefix + ".bin"):
        return None
    data = np.memmap(prefix + ".bin", mode="r", dtype=header.dtype)
    try:
        chunks = (data[i : i + chunk_elements] for i in range(0, data.shape[0], chunk_elements))
        return max((int(chunk.max()) for chunk in chunks), default=None)
    finally:
        del data


def check_token_ids(prefix: str, vocab_size: int, what: str = "dataset") -> None:
    """Raise a one-line :class:`IndexedDatasetError` when ``{prefix}.bin`` holds an id ``>= vocab_size``.

    Ids inside Megatron's padded vocabulary but above the tokenizer's would train embedding rows
    no tokenizer can produce; ids above the padded vocabulary crash the embedding lookup with a
    bare ``IndexError``. ``what`` names the flag or role in the message.
    """
    top = max_token_id(prefix)
    if top is not None and top >= vocab_size:
        raise IndexedDatasetError(
            f"{prefix}.bin ({what}): token id {top} >= the tokenizer's vocabulary size {vocab_size}; "
            f"the dataset was made with another tokenizer"
        )


def dataset_fingerprint(prefix: str, samples: int = 64, block: int = 1 << 16) -> dict:
    """A cheap identity of ``{prefix}.bin/.idx``: SHA-256 of the ``.idx`` (O(sequences)), the
    ``.bin`` size, and SHA-256 of ``samples`` blocks of ``block`` bytes spread evenly over the
    ``.bin`` (bounded time for any size). Copies (``cp``, ``rsync``) keep it; rewrites change it."""
    with open(prefix + ".idx", "rb") as f:
        idx_sha = hashlib.sha256(f.read()).hexdigest()
    size = os.path.getsize(prefix + ".bin")
    digest = hashlib.sha256()
    with open(prefix + ".bin", "rb") as f:
        if size <= samples * block:
            digest.update(f.read())
        else:
            step = (size - block) // (samples - 1)
            for i in range(samples):
                f.seek(i * step)
                digest.update(f.read(block))
    return {"idx_sha256": idx_sha, "bin_size": size, "bin_sample_sha256": digest.hexdigest()}


def _mask_record_path(text_prefix: str) -> str:
    return loss_mask_prefix(text_prefix) + ".json"


def write_loss_mask_record(text_prefix: str) -> str:
    """Record next to ``{text_prefix}_lossmask`` which text dataset it was written with.

    Written (temp name + rename) after the text dataset is in place, as
    ``{text_prefix}_lossmask.json``; :func:`check_loss_mask_record` compares it when training
    opens the mask. Returns the record's path.
    """
    path = _mask_record_path(text_prefix)
    record = {"text_prefix": os.path.basename(text_prefix), "text": dataset_fingerprint(text_prefix)}
    with atomic_open(path) as f:
        json.dump(record, f, indent=1)
    return path


def check_loss_mask_record(text_prefix: str) -> bool:
    """Refuse a loss mask recorded for another version of its text dataset.

    Returns:
        Whether a record exists (masks written before records existed have none; their
        sequence structure is still checked by the reader).

    Raises:
        IndexedDatasetError: the record is unreadable or names different text files (one line).
    """
    path = _mask_record_path(text_prefix)
    if not os.path.isfile(path):
        return False
    mask = loss_mask_prefix(text_prefix)
    try:
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)["text"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise IndexedDatasetError(f"{path}: unreadable loss-mask record ({err})") from None
    if recorded != dataset_fingerprint(text_prefix):
        raise IndexedDatasetError(
            f"{mask}.bin/.idx: stale loss mask: it was written with another version of {text_prefix}.bin/.idx "
            f"(see {path}); re-run tools/preprocess_data.py --codeswitch, or delete the {mask}.* files"
        )
    return True


def remove_loss_mask(text_prefix: str) -> list:
    """Delete ``{text_prefix}_lossmask`` (``.idx`` first, so no reader sees a mask without its
    index, then ``.bin`` and the record). Returns the removed paths."""
    mask = loss_mask_prefix(text_prefix)
    removed = []
    for path in (mask + ".idx", mask + ".bin", mask + ".json"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


def open_indexed_dataset(prefix: str, *, mmap: bool = True):
    """Validate with :func:`check_indexed_dataset`, then open megatron-core's ``IndexedDataset``.

    Raises:
        IndexedDatasetError: the files are missing or inconsistent.
    """
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    header = check_indexed_dataset(prefix)
    try:
        return IndexedDataset(prefix, multimodal=header.multimodal, mmap=mmap)
    except Exception as err:  # pragma: no cover - check_indexed_dataset catches what we know
        raise IndexedDatasetError(f"{prefix}.idx: megatron-core cannot read it ({type(err).__name__}: {err})") from None


class IndexedDatasetWriter:
    """megatron-core's ``IndexedDatasetBuilder`` writing ``{prefix}.bin/.idx`` all-or-nothing.

    Data goes to temporary names (:func:`~megatron_prealign.platform.files.atomic_paths`);
    :meth:`commit` writes the index and renames both (the ``.idx`` last), :meth:`abort` removes
    them. Existing files at ``prefix`` are left alone until a successful commit replaces them.

    Args:
        prefix: output dataset prefix (no extension).
        dtype: element dtype (``DType.optimal_dtype(vocab_size)`` for tokens, ``np.uint8`` for masks).
    """

    def __init__(self, prefix: str, dtype: Type[np.number]) -> None:
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

        self.prefix = prefix
        self.dtype = dtype
        # entered here, left by publish() (rename) or abort() (remove): the writer's lifetime
        # spans calls, so the context manager is driven by hand
        self._rename: Optional[Any] = atomic_paths([prefix + ".bin", prefix + ".idx"])
        self._tmp_bin, self._tmp_idx = self._rename.__enter__()
        self._builder: Optional[IndexedDatasetBuilder] = IndexedDatasetBuilder(self._tmp_bin, dtype=dtype)
        self._finalized = False
        self.num_documents = 0
        self.num_tokens = 0

    def add_document(self, array: np.ndarray) -> None:
        """Append one document as one sequence (converted to the output dtype)."""
        assert self._builder is not None, "writer already committed or aborted"
        n = int(array.shape[0])
        if n > np.iinfo(np.int32).max:
            raise IndexedDatasetError(
                f"{self.prefix}: a document of {n} tokens exceeds the .idx format's int32 sequence length"
            )
        self._builder.add_document(array, [n])
        self.num_documents += 1
        self.num_tokens += n

    def commit(self) -> None:
        """Write the index and atomically rename both files to ``{prefix}.bin/.idx``."""
        self.finalize()
        self.publish()

    def finalize(self) -> None:
        """Close the data file and write the index, still under the temporary names."""
        assert self._builder is not None, "writer already finalized or aborted"
        builder, self._builder = self._builder, None
        self._finalized = True
        try:
            builder.finalize(self._tmp_idx)
        except BaseException:
            self.abort()
            raise

    def publish(self) -> None:
        """Rename the finalized files to ``{prefix}.bin`` then ``{prefix}.idx``."""
        assert self._finalized and self._rename is not None, "finalize() first"
        rename, self._rename = self._rename, None
        rename.__exit__(None, None, None)  # on failure it removes the temporaries itself

    def abort(self) -> None:
        """Close and delete the temporary files (safe to call twice, or after commit)."""
        if self._builder is not None:
            self._builder.data_file.close()
            self._builder = None
        if self._rename is not None:
            rename, self._rename = self._rename, None
            rename.__exit__(RuntimeError, RuntimeError("aborted"), None)


def write_documents(prefix: str, documents: Iterable[Sequence[int]], dtype: Type[np.number]) -> Tuple[int, int]:
    """Write token documents (one sequence each) as ``{prefix}.bin/.idx``, all-or-nothing.

    Returns:
        ``(num_documents, num_tokens)``.
    """
    writer = IndexedDatasetWriter(prefix, dtype)
    try:
        for doc in documents:
            writer.add_document(np.asarray(doc, dtype=dtype))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return writer.num_documents, writer.num_tokens
