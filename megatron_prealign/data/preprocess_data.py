"""Binarize a corpus into Megatron ``.bin/.idx`` datasets, optionally codeswitching it on the way.

This is the library behind ``tools/preprocess_data.py`` (Megatron-LM's tool, same flags and
output). One pass over the input:

1. :class:`~megatron_prealign.data.readers.CorpusReader` streams the records of every input file
   (JSONL[.gz], CulturaX parquet, text) in order, in the main process;
2. a ``multiprocessing`` pool decodes and tokenizes batches of records (``imap`` over batches:
   the output order is the input order whatever ``workers`` is, and at most
   ``max_inflight_batches`` batches are in flight, so memory stays bounded even when writing is
   slower than tokenizing);
3. the main process numbers the non-empty documents of each key (0, 1, 2, ... in output order),
   codeswitches each one with that number as ``doc_index`` when a codeswitcher is given (in
   ``codeswitch_threads`` threads: the C++ ``apply`` releases the GIL; numbers are assigned
   before the work is split, so threads change nothing in the output), and appends it to
   ``{output_prefix}_{key}_document`` (and the mask to ``..._document_lossmask``) through
   megatron-core's ``IndexedDatasetBuilder``, under temporary names renamed at the end.

Every document is written as one sequence (Megatron's document level). Decisions:

* Empty documents (empty string, JSON ``null``, blank line; nothing left after tokenizing) are
  skipped and counted, not written: megatron-core's builder would store a document with no
  sequence (Megatron-LM's own behaviour), which makes the document count differ from the
  sequence count and would shift codeswitching's document numbering.
* ``max_tokens``: documents are written whole until the running total of written tokens (all
  keys, EOD and codeswitching included) reaches the budget; the document that reaches or crosses
  it is written entirely and is the last one. So the output holds at least ``max_tokens`` tokens
  (unless the input runs out) and exceeds it by less than that last document's length.
* Long documents (over ``LONG_DOCUMENT_CHARS`` characters) are tokenized in pieces of about
  ``DOCUMENT_PIECE_CHARS`` characters, cut only before a single space that sits between two
  non-space characters, and the ids concatenated into one NumPy array: tokenizing one huge
  string at once holds the tokenizer's per-token objects for the whole document (7 GB for a
  50 MB document), pieces bound that to one piece (a 50 MB document stays under 1 GB). For
  GPT-2-style byte-level BPE (GPT2BPETokenizer, byte-level HuggingFaceTokenizer) and
  NullTokenizer no pre-token crosses such a cut (a space followed by a non-space always starts
  a new pre-token and no pattern looks behind), so the ids equal those of the whole document;
  other tokenizers (SentencePiece adds a prefix per call) and documents without such a space
  are tokenized whole. Documents move between processes as NumPy arrays of the output dtype.
  A document longer than ``2**31 - 1`` tokens (the ``.idx`` int32 length) is a one-line error.
* JSON values that are lists of strings (Megatron's pre-split sentences) are tokenized element by
  element and concatenated into one document.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.data.indexed import (
    IndexedDatasetError,
    IndexedDatasetWriter,
    document_prefix,
    loss_mask_prefix,
    remove_loss_mask,
    write_loss_mask_record,
)
from megatron_prealign.data.readers import (
    CorpusReader,
    InputError,
    MalformedRecordError,
    RawRecord,
    ReaderConfig,
    decode_record,
)
from megatron_prealign.platform.process import die_with_parent

logger = logging.getLogger(__name__)

__all__ = ["PreprocessConfig", "PreprocessStats", "preprocess", "output_prefixes", "format_duration"]

_INT32_MAX = np.iinfo(np.int32).max


@dataclass
class PreprocessConfig:
    """What to write and how to run (flags of ``tools/preprocess_data.py``)."""

    output_prefix: str
    """Megatron ``--output-prefix``; datasets are ``{output_prefix}_{key}_document.bin/.idx``."""
    append_eod: bool = False
    """Megatron ``--append-eod``: append the tokenizer's EOD id to every non-empty document."""
    workers: int = 1
    """Megatron ``--workers``: tokenizing processes; 1 tokenizes in the main process. The output
    does not depend on it."""
    batch_size: int = 64
    """Records per task sent to a worker (the ``imap`` chunk)."""
    max_inflight_batches: int = 0
    """Batches read ahead of the writer; 0 means ``4 * workers``. Bounds memory."""
    codeswitch_threads: int = 0
    """Threads running the codeswitcher in the main process (its ``apply`` releases the GIL);
    0 means ``max(1, min(8, workers // 4))``. The output does not depend on it."""
    max_tokens: Optional[int] = None
    """``--max-tokens``: stop once this many tokens are written (see the module docstring)."""
    skip_malformed: bool = False
    """``--skip-malformed``: count and skip malformed records instead of stopping with an error."""
    log_interval: int = 1000
    """Megatron ``--log-interval``: documents between progress lines (0 disables them)."""


@dataclass
class PreprocessStats:
    """What a run read and wrote."""

    records: int = 0
    """Input records processed (lines, rows, text blocks)."""
    documents: Dict[str, int] = field(default_factory=dict)
    """Documents written per key."""
    tokens: Dict[str, int] = field(default_factory=dict)
    """Tokens written per key (EOD and codeswitching included)."""
    empty: Dict[str, int] = field(default_factory=dict)
    """Empty documents skipped per key."""
    malformed: int = 0
    """Malformed records skipped (only with ``skip_malformed``)."""
    input_bytes: int = 0
    """Bytes of the processed records."""
    elapsed_s: float = 0.0
    """Wall time of the run."""
    codeswitch_s: float = 0.0
    """Time spent in the codeswitcher (``apply`` and the checks around it), summed over its
    threads."""
    stopped_at_max_tokens: bool = False
    """Whether the token budget ended the run before the input did."""
    outputs: List[str] = field(default_factory=list)
    """Prefixes of the datasets written."""

    @property
    def total_tokens(self) -> int:
        """Tokens written over all keys."""
        return sum(self.tokens.values())

    @property
    def total_documents(self) -> int:
        """Documents written over all keys."""
        return sum(self.documents.values())


def output_prefixes(output_prefix: str, json_keys: Sequence[str], with_loss_mask: bool) -> List[str]:
    """Prefixes of every dataset a run writes (text datasets, then loss masks)."""
    texts = [document_prefix(output_prefix, k) for k in json_keys]
    return texts + ([loss_mask_prefix(p) for p in texts] if with_loss_mask else [])


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` for progress lines."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ---------------------------------------------------------------------------------------------
# Worker side: decode + tokenize. Module-level state set by the pool initializer.


class _EncoderState:
    tokenizer: Any = None
    json_keys: Tuple[str, ...] = ()
    append_eod: bool = False
    dtype: Any = np.int32
    vocab_size: int = 0
    skip_malformed: bool = False


_STATE = _EncoderState()

# One encoded record: (None, nbytes, reason) when skipped as malformed, else
# (tuple of arrays-or-None per key, nbytes, None). An array already ends with EOD if asked.
_Encoded = Tuple[Optional[Tuple[Optional[np.ndarray], ...]], int, Optional[str]]


def _set_encoder_state(
    tokenizer: Any, json_keys: Tuple[str, ...], append_eod: bool, dtype: Any, skip_malformed: bool
) -> None:
    _STATE.tokenizer = tokenizer
    _STATE.json_keys = json_keys
    _STATE.append_eod = append_eod
    _STATE.dtype = dtype
    _STATE.vocab_size = int(tokenizer.vocab_size)
    _STATE.skip_malformed = skip_malformed


def _init_worker(
    parent_pid: int,
    tokenizer_factory: Callable[[], Any],
    json_keys: Tuple[str, ...],
    append_eod: bool,
    dtype: Any,
    skip_malformed: bool,
) -> None:
    # Ctrl-C is handled once, by the main process, which then terminates the pool; a kill -9
    # of the main process takes the workers with it (they would block on the task queue forever).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    # One tokenizing thread per worker process: HF tokenizers' batch encoding would otherwise
    # start a thread per core in every worker.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _set_encoder_state(tokenizer_factory(), json_keys, append_eod, dtype, skip_malformed)


def _to_array(ids: Sequence[int], where: str, key: str) -> Optional[np.ndarray]:
    n = len(ids)
    if n == 0:
        return None
    total = n + (1 if _STATE.append_eod else 0)
    if total > _INT32_MAX:
        raise IndexedDatasetError(
            f"{where}: key {key!r} has {total} tokens, more than a Megatron sequence can hold ({_INT32_MAX})"
        )
    arr = np.empty(total, dtype=_STATE.dtype)
    try:
        ids64 = np.asarray(ids, dtype=np.int64)
    except OverflowError:
        ids64 = None
    if ids64 is None or (ids64.size and (ids64.min() < 0 or ids64.max() >= _STATE.vocab_size)):
        raise InputError(f"{where}: the tokenizer produced an id outside [0, {_STATE.vocab_size})")
    arr[:n] = ids64
    if _STATE.append_eod:
        arr[n] = _STATE.tokenizer.eod
    return arr


LONG_DOCUMENT_CHARS = 4 << 20
"""Documents longer than this (characters) are tokenized in pieces when the tokenizer allows."""
DOCUMENT_PIECE_CHARS = 1 << 20
"""Target piece length (characters) for long documents; a piece ends at the next safe cut."""

# A cut before a single space between two non-space characters: " x" starts a new pre-token in
# every GPT-2-style regex (` ?\p{L}+`, ` ?[^\s\p{L}\p{N}]+`), and no pre-token ending at "S"
# can extend over a space, so the pieces' pre-tokens are the whole document's.
_SAFE_CUT = re.compile(r"(?<=\S) (?=\S)")


def _splits_safely(tok: Any) -> bool:
    """Whether tokenizing ``tok`` piecewise at :data:`_SAFE_CUT` equals tokenizing whole."""
    name = type(tok).__name__
    if name in ("GPT2BPETokenizer", "NullTokenizer"):
        return True
    return name == "HuggingFaceTokenizer" and bool(getattr(tok, "_byte_level", False))


def text_pieces(text: str, piece_chars: int) -> Iterator[str]:
    """Consecutive pieces of ``text`` of about ``piece_chars`` characters, cut at safe spaces."""
    pos, n = 0, len(text)
    while n - pos > piece_chars:
        m = _SAFE_CUT.search(text, pos + piece_chars)
        if m is None:
            break
        yield text[pos : m.start()]
        pos = m.start()
    yield text[pos:]


def tokenize_long(tok: Any, text: str, piece_chars: int = DOCUMENT_PIECE_CHARS) -> np.ndarray:
    """Tokenize a long document piece by piece into one int64 array (see the module docstring)."""
    parts = [np.asarray(tok.tokenize(piece), dtype=np.int64) for piece in text_pieces(text, piece_chars)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _tokenize_values(values: List[Any]) -> List[List[int]]:
    """Tokenize one key's values for a batch (strings batched when the tokenizer can)."""
    tok = _STATE.tokenizer
    out: List[Optional[List[int]]] = [None] * len(values)
    if _splits_safely(tok):
        for i, v in enumerate(values):
            if isinstance(v, str) and len(v) > LONG_DOCUMENT_CHARS:
                out[i] = tokenize_long(tok, v)  # type: ignore[call-overload]
                values[i] = None  # the string is no longer needed by this batch
    plain = [i for i, v in enumerate(values) if isinstance(v, str) and v and out[i] is None]
    batch_fn = getattr(tok, "tokenize_batch", None)
    if batch_fn is not None and len(plain) > 1:
        for i, ids in zip(plain, batch_fn([values[i] for i in plain])):
            out[i] = ids
    else:
        for i in plain:
            out[i] = tok.tokenize(values[i])
    for i, v in enumerate(values):
        if out[i] is None and isinstance(v, list):  # pre-split sentences, concatenated
            out[i] = [t for sentence in v if sentence for t in tok.tokenize(sentence)]
        elif out[i] is None:  # None or ""
            out[i] = []
    return out  # type: ignore[return-value]


def _encode_batch(batch: Tuple[List[RawRecord], float]) -> Tuple[List[_Encoded], float]:
    records, progress = batch
    keys = _STATE.json_keys
    decoded: List[Optional[Tuple[Any, ...]]] = []
    reasons: List[Optional[str]] = []
    for rec in records:
        try:
            decoded.append(decode_record(rec, keys))
            reasons.append(None)
        except MalformedRecordError as err:
            if not _STATE.skip_malformed:
                raise
            decoded.append(None)
            reasons.append(str(err))
    ok = [i for i, d in enumerate(decoded) if d is not None]
    per_key = [_tokenize_values([decoded[i][k] for i in ok]) for k in range(len(keys))]
    results: List[_Encoded] = [(None, rec.nbytes, reason) for rec, reason in zip(records, reasons)]
    for j, i in enumerate(ok):
        arrays = tuple(_to_array(per_key[k][j], records[i].where, keys[k]) for k in range(len(keys)))
        for k in range(len(keys)):
            per_key[k][j] = None  # type: ignore[call-overload]  # free the Python list early
        results[i] = (arrays, records[i].nbytes, None)
    return results, progress


# ---------------------------------------------------------------------------------------------
# Main side.


def _batches(reader: CorpusReader, batch_size: int) -> Iterator[Tuple[List[RawRecord], float]]:
    batch: List[RawRecord] = []
    for rec in reader:
        batch.append(rec)
        if len(batch) == batch_size:
            yield batch, reader.progress()
            batch = []
    if batch:
        yield batch, reader.progress()


class _Throttle:
    """Bounds the batches handed to the pool but not yet consumed by the writer."""

    def __init__(self, limit: int) -> None:
        self._sem = threading.Semaphore(limit)
        self.stopped = threading.Event()

    def gate(self, batches: Iterator[Any]) -> Iterator[Any]:
        for item in batches:
            while not self._sem.acquire(timeout=0.2):
                if self.stopped.is_set():
                    return
            if self.stopped.is_set():
                return
            yield item

    def release(self) -> None:
        self._sem.release()

    def stop(self) -> None:
        self.stopped.set()
        self._sem.release()


def _encoded_batches(
    reader: CorpusReader,
    tokenizer_factory: Callable[[], Any],
    tokenizer: Any,
    keys: Tuple[str, ...],
    dtype: Any,
    config: PreprocessConfig,
    pool_holder: List[Any],
    throttle: _Throttle,
) -> Iterator[Tuple[List[_Encoded], float]]:
    init_args = (keys, config.append_eod, dtype, config.skip_malformed)
    if config.workers <= 1:
        _set_encoder_state(tokenizer, *init_args)
        for batch in _batches(reader, config.batch_size):
            yield _encode_batch(batch)
        return
    import multiprocessing

    pool = multiprocessing.get_context("fork").Pool(
        config.workers, initializer=_init_worker, initargs=(os.getpid(), tokenizer_factory) + init_args
    )
    pool_holder.append(pool)
    gated = throttle.gate(_batches(reader, config.batch_size))
    for result in pool.imap(_encode_batch, gated, chunksize=1):
        yield result
        throttle.release()


def _codeswitch_jobs(
    codeswitcher: Any, jobs: List[Tuple[np.ndarray, int]], dtype: Any, vocab_size: int
) -> Tuple[List[Tuple[np.ndarray, np.ndarray]], float]:
    start = time.perf_counter()
    out = []
    for arr, doc_index in jobs:
        tokens, mask = codeswitcher.apply(arr.astype(np.int32, copy=False), doc_index)
        if tokens.shape != mask.shape:
            raise ValueError("codeswitcher returned tokens and mask of different lengths")
        if tokens.size and int(tokens.max()) >= vocab_size:
            raise ValueError(f"codeswitcher wrote id {int(tokens.max())} >= vocabulary size {vocab_size}")
        out.append((tokens.astype(dtype, copy=False), np.asarray(mask, dtype=np.uint8)))
    return out, time.perf_counter() - start


def _codeswitched_batches(
    batches: Iterator[Tuple[List[_Encoded], float]],
    codeswitcher: Optional[Any],
    num_keys: int,
    dtype: Any,
    vocab_size: int,
    threads: int,
) -> Iterator[Tuple[List[_Encoded], float, Optional[Tuple[List[Tuple[np.ndarray, np.ndarray]], float]]]]:
    """Attach the codeswitched (tokens, mask) of every non-empty document, in output order.

    Document numbers are assigned here, in order, before the work is spread over threads, so the
    result does not depend on the thread count. A document numbered but never written (past
    ``max_tokens``) is simply dropped: written documents keep the numbers 0, 1, 2, ...
    """
    if codeswitcher is None:
        for results, progress in batches:
            yield results, progress, None
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    next_index = [0] * num_keys
    pending: "deque" = deque()
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="codeswitch")
    try:
        for results, progress in batches:
            jobs: List[Tuple[np.ndarray, int]] = []
            for arrays, _, _ in results:
                if arrays is None:
                    continue
                for k, arr in enumerate(arrays):
                    if arr is not None:
                        jobs.append((arr, next_index[k]))
                        next_index[k] += 1
            pending.append((results, progress, executor.submit(_codeswitch_jobs, codeswitcher, jobs, dtype, vocab_size)))
            while len(pending) > 2 * threads:
                results, progress, future = pending.popleft()
                yield results, progress, future.result()
        while pending:
            results, progress, future = pending.popleft()
            yield results, progress, future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def preprocess(
    inputs: Sequence[str],
    tokenizer_factory: Callable[[], Any],
    config: PreprocessConfig,
    reader_config: Optional[ReaderConfig] = None,
    codeswitcher: Optional[Any] = None,
) -> PreprocessStats:
    """Binarize ``inputs`` into ``{output_prefix}_{key}_document`` datasets (+ loss masks).

    Args:
        inputs: ``--input`` values: files, globs or directories (JSONL[.gz], parquet, text).
        tokenizer_factory: a picklable callable returning the tokenizer (``vocab_size``, ``eod``,
            ``tokenize``; ``tokenize_batch`` used when present); called once in the main process
            and once per worker.
        config: output and run options.
        reader_config: fields and formats (default: key ``text``, format from the extension).
        codeswitcher: optional object with ``apply(tokens int32, doc_index) -> (tokens, mask)``
            (:class:`megatron_prealign.data.codeswitch.Codeswitcher`; ``apply`` must be safe to
            call from several threads); runs in threads of the main process on every document,
            ``doc_index`` = the document's 0-based index in its key's output. Adds a uint8
            ``{text_prefix}_lossmask`` dataset per key.

    Returns:
        What was read and written.

    Raises:
        InputError: missing/unreadable input, bad ``--json-keys``, a malformed record (unless
            skipped), or nothing to write.
        IndexedDatasetError: a document too long for the ``.idx`` format.
        KeyboardInterrupt: re-raised after removing the temporary files.
    """
    from megatron.core.datasets.indexed_dataset import DType

    reader_config = reader_config or ReaderConfig()
    if config.workers < 1:
        raise InputError(f"--workers must be >= 1, got {config.workers}")
    if config.batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {config.batch_size}")
    if config.max_tokens is not None and config.max_tokens < 1:
        raise InputError(f"--max-tokens must be >= 1, got {config.max_tokens}")
    keys = tuple(reader_config.json_keys)
    reader = CorpusReader(inputs, reader_config)
    tokenizer = tokenizer_factory()
    vocab_size = int(tokenizer.vocab_size)
    dtype = DType.optimal_dtype(vocab_size)
    if codeswitcher is not None:
        cs_vocab = getattr(codeswitcher, "vocab_size", vocab_size)
        if cs_vocab != vocab_size:
            raise InputError(
                f"--prealign-table: the codeswitcher's vocabulary ({cs_vocab}) differs from the tokenizer's ({vocab_size})"
            )

    stats = PreprocessStats(
        documents={k: 0 for k in keys}, tokens={k: 0 for k in keys}, empty={k: 0 for k in keys}
    )
    writers: Dict[str, IndexedDatasetWriter] = {}
    mask_writers: Dict[str, IndexedDatasetWriter] = {}
    pool_holder: List[Any] = []
    throttle = _Throttle(config.max_inflight_batches or 4 * max(1, config.workers))
    logger.info(
        "Binarizing %d file(s) (%.1f MB) with %d worker(s) into %s", len(reader.files),
        reader.total_bytes / 2**20, config.workers, ", ".join(output_prefixes(config.output_prefix, keys, codeswitcher is not None)),
    )
    start = time.time()
    committed = False
    try:
        for key in keys:
            prefix = document_prefix(config.output_prefix, key)
            writers[key] = IndexedDatasetWriter(prefix, dtype)
            if codeswitcher is not None:
                mask_writers[key] = IndexedDatasetWriter(loss_mask_prefix(prefix), np.uint8)
        cs_threads = config.codeswitch_threads or max(1, min(8, config.workers // 4))
        encoded = _encoded_batches(reader, tokenizer_factory, tokenizer, keys, dtype, config, pool_holder, throttle)
        batches = _codeswitched_batches(encoded, codeswitcher, len(keys), dtype, vocab_size, cs_threads)
        _write_batches(batches, keys, writers, mask_writers, config, stats, start)
        throttle.stop()
        if stats.total_documents == 0:
            raise InputError(
                f"nothing to write: {stats.records} record(s) read, {sum(stats.empty.values())} empty "
                f"document(s), {stats.malformed} malformed record(s) skipped (check --input and --json-keys)"
            )
        _publish(keys, writers, mask_writers, codeswitcher, stats)
        committed = True
    finally:
        throttle.stop()
        for pool in pool_holder:
            if committed and not stats.stopped_at_max_tokens:
                pool.close()
            else:
                pool.terminate()
            pool.join()
        if not committed:
            for w in list(writers.values()) + list(mask_writers.values()):
                w.abort()
    stats.elapsed_s = time.time() - start
    _log_summary(stats)
    return stats


def _write_batches(
    batches: Iterator[Tuple[List[_Encoded], float, Optional[Tuple[List[Tuple[np.ndarray, np.ndarray]], float]]]],
    keys: Sequence[str],
    writers: Dict[str, IndexedDatasetWriter],
    mask_writers: Dict[str, IndexedDatasetWriter],
    config: PreprocessConfig,
    stats: PreprocessStats,
    start: float,
) -> None:
    """Append the documents of ``batches`` (in input order) to the writers, counting in ``stats``;
    stops at ``config.max_tokens``."""
    next_log = config.log_interval if config.log_interval > 0 else None
    for results, progress, switched in batches:
        switched_docs = iter(switched[0]) if switched is not None else None
        if switched is not None:
            stats.codeswitch_s += switched[1]
        for arrays, nbytes, reason in results:
            stats.records += 1
            stats.input_bytes += nbytes
            if arrays is None:
                stats.malformed += 1
                if stats.malformed <= 10:
                    logger.warning("skipped malformed record: %s", reason)
                continue
            for key, arr in zip(keys, arrays):
                if arr is None:
                    stats.empty[key] += 1
                    continue
                if switched_docs is not None:
                    tokens, mask = next(switched_docs)
                    mask_writers[key].add_document(mask)
                else:
                    tokens = arr
                writers[key].add_document(tokens)
                stats.documents[key] += 1
                stats.tokens[key] += int(tokens.size)
            if next_log is not None and stats.records >= next_log:
                next_log += config.log_interval
                _log_progress(stats, start, progress, config.max_tokens)
            if config.max_tokens is not None and stats.total_tokens >= config.max_tokens:
                stats.stopped_at_max_tokens = True
                return


def _publish(
    keys: Sequence[str],
    writers: Dict[str, IndexedDatasetWriter],
    mask_writers: Dict[str, IndexedDatasetWriter],
    codeswitcher: Optional[Any],
    stats: PreprocessStats,
) -> None:
    """Check the codeswitching counts, then rename every output into place (masks first) and
    record (or remove) each text's loss mask."""
    if codeswitcher is not None and hasattr(codeswitcher, "applied_stats"):
        # No silent nothing: print the substitution count and ratio; substituting nothing
        # where something was expected is an error before anything is published.
        cs_stats = codeswitcher.applied_stats()
        logger.info("codeswitching: %s", cs_stats.describe())
        cs_stats.check(codeswitcher.config.ratio, "--codeswitch")
    # Finalize everything, then rename loss masks before texts: a text dataset never
    # appears without the mask it was written with (it would silently train unmasked).
    for w in list(mask_writers.values()) + list(writers.values()):
        w.finalize()
    for w in list(mask_writers.values()) + list(writers.values()):
        w.publish()
    for key in keys:
        text = writers[key].prefix
        if codeswitcher is not None:
            write_loss_mask_record(text)
        else:
            # a mask left by an earlier --codeswitch run on this prefix would silently mask
            # the new plain text's targets; removed once the new text is in place
            for path in remove_loss_mask(text):
                logger.info("removed stale loss mask file %s (this run writes no loss mask)", path)
    stats.outputs = [writers[k].prefix for k in keys] + [mask_writers[k].prefix for k in mask_writers]


def _log_progress(stats: PreprocessStats, start: float, progress: float, max_tokens: Optional[int]) -> None:
    elapsed = max(time.time() - start, 1e-9)
    fraction = progress
    if max_tokens:
        fraction = max(fraction, min(1.0, stats.total_tokens / max_tokens))
    eta = f", {100 * fraction:.1f}% of input, ETA {format_duration(elapsed * (1 - fraction) / fraction)}" if fraction > 0 else ""
    logger.info(
        "Processed %d documents (%.1f docs/s, %.2f MB/s, %.0f tokens/s)%s",
        stats.records, stats.records / elapsed, stats.input_bytes / elapsed / 2**20,
        stats.total_tokens / elapsed, eta,
    )


def _log_summary(stats: PreprocessStats) -> None:
    elapsed = max(stats.elapsed_s, 1e-9)
    logger.info(
        "Done in %s: %d records (%.1f docs/s, %.2f MB/s), %d documents and %d tokens written "
        "(%.0f tokens/s); skipped %d empty document(s) and %d malformed record(s)%s",
        format_duration(elapsed), stats.records, stats.records / elapsed, stats.input_bytes / elapsed / 2**20,
        stats.total_documents, stats.total_tokens, stats.total_tokens / elapsed, sum(stats.empty.values()),
        stats.malformed, "; stopped at --max-tokens" if stats.stopped_at_max_tokens else "",
    )
    if stats.codeswitch_s:
        logger.info("  codeswitching took %.2fs in the main process's threads (%.1f%% of the run's wall time)",
                    stats.codeswitch_s, 100 * stats.codeswitch_s / elapsed)
    for prefix in stats.outputs:
        logger.info("  wrote %s.bin/.idx", prefix)
