"""Counting English words in a corpus with NLTK's word tokenizer (paper Appendix A).

The paper recognises words with NLTK's ``word_tokenize`` and keeps every word seen more than 20
times (``--min-count 20``; Sec. 5.4 / Table 5 keeps only the most frequent fraction). Offline,
``word_tokenize`` needs the punkt sentence splitter's data, so each document is tokenized as one
"line" with ``NLTKWordTokenizer().tokenize`` (identical to ``word_tokenize(text,
preserve_line=True)``). Without sentence splitting a sentence-final period stays attached to the
word (``"bank."``); :func:`words_of` splits it off again unless the word holds another period
(``"U.S."``, ``"e.g."`` stay whole).

What counts as a word (:func:`is_word`): a token whose first character is a letter or a digit
and which contains at least one letter: ``bank``, ``Berlin``, ``COVID-19``, ``3D``, ``O'Brien``.
Pure punctuation, numbers (``1984``, ``3.5``), NLTK's quote tokens and clitics (``'s``,
``n't``) are not words: they have no dictionary translation, and the codeswitcher would never
see them as a word-initial token sequence anyway.

Case: surface forms are counted as written (``The`` and ``the`` are different words), because
token ids are case-sensitive and the codeswitcher matches ids. Dictionary look-up falls back to
the lower-cased form (see :mod:`megatron_prealign.alignment.build`).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Tuple

__all__ = [
    "WordCountConfig",
    "is_word",
    "words_of",
    "count_words",
    "select_words",
    "save_word_counts",
    "load_word_counts",
]

_CLITICS = frozenset({"n't", "N'T"})
_TOKENIZER = None


def _nltk_tokenize(text: str) -> List[str]:
    global _TOKENIZER
    if _TOKENIZER is None:
        from nltk.tokenize import NLTKWordTokenizer

        _TOKENIZER = NLTKWordTokenizer()
    return _TOKENIZER.tokenize(text)


def is_word(token: str) -> bool:
    """Whether an NLTK token counts as a word (see the module docstring)."""
    if not token or not token[0].isalnum() or token in _CLITICS:
        return False
    return any(ch.isalpha() for ch in token)


def words_of(text: str) -> List[str]:
    """The words of one document, in order (NLTK word tokens, filtered by :func:`is_word`).

    Args:
        text (str): a document.

    Returns:
        List[str]: surface forms (case kept).
    """
    out: List[str] = []
    for token in _nltk_tokenize(text):
        if len(token) > 1 and token.endswith(".") and "." not in token[:-1]:
            token = token[:-1]
        if is_word(token):
            out.append(token)
    return out


def _count_batch(texts: List[str]) -> Tuple[Counter, int, int]:
    """Word counts of a batch, its documents and its characters."""
    return Counter(w for t in texts for w in words_of(t)), len(texts), sum(len(t) for t in texts)


def _batches(docs: Iterable[str], size: int, limit: Optional[int]) -> Iterator[List[str]]:
    docs = iter(docs) if limit is None else itertools.islice(docs, max(limit, 0))
    while batch := list(itertools.islice(docs, max(size, 1))):  # a size < 1 counts as 1
        yield batch


@dataclass
class WordCountConfig:
    """How :func:`count_words` reads the corpus."""

    workers: int = 1
    """Processes tokenizing documents (1 = in this process)."""

    batch_documents: int = 512
    """Documents per work item sent to a worker."""

    max_documents: Optional[int] = None
    """Stop after this many documents (None = all)."""

    log_interval: float = 10.0
    """Seconds between progress lines on stderr (0 = silent)."""


def count_words(documents: Iterable[str], config: Optional[WordCountConfig] = None) -> Counter:
    """Count word surface forms over a stream of documents.

    Args:
        documents (Iterable[str]): documents (e.g. ``megatron_prealign.data.readers.iter_documents(paths, json_keys)``).
        config (Optional[WordCountConfig]): parallelism, limit, progress.

    Returns:
        Counter: word -> occurrences.
    """
    cfg = config or WordCountConfig()
    total: Counter = Counter()
    start = last = time.time()
    ndocs = 0
    nchars = 0

    def report(final: bool = False) -> None:
        nonlocal last
        now = time.time()
        if cfg.log_interval and (final or now - last >= cfg.log_interval):
            rate = nchars / max(now - start, 1e-9) / 1e6
            print(
                f"[count_words] {ndocs} documents, {nchars / 1e6:.1f} MB, {len(total)} distinct words, "
                f"{rate:.2f} MB/s, {now - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            last = now

    batches = _batches(documents, cfg.batch_documents, cfg.max_documents)
    if cfg.workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn" if sys.platform == "darwin" else "fork").Pool(cfg.workers)
        results = pool.imap(_count_batch, batches, chunksize=1)
    else:
        pool, results = contextlib.nullcontext(), map(_count_batch, batches)
    with pool:
        for counts, n, chars in results:
            total.update(counts)
            ndocs += n
            nchars += chars
            report()
    report(final=True)
    return total


def select_words(
    counts: Counter, min_count: int = 20, top_fraction: float = 1.0
) -> List[Tuple[str, int]]:
    """The words kept for the table, most frequent first (ties: alphabetical).

    Args:
        counts (Counter): word -> occurrences.
        min_count (int): keep words seen at least this often.
        top_fraction (float): then keep only the ``ceil(top_fraction * n)`` most frequent of
            those ``n`` words (paper Table 5: 0.25, 0.5, ...).

    Returns:
        List[Tuple[str, int]]: ``(word, count)`` pairs.

    Raises:
        ValueError: ``top_fraction`` outside ``(0, 1]``.
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"--top-fraction must be in (0, 1], got {top_fraction}")
    kept = sorted(((w, c) for w, c in counts.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
    if top_fraction < 1.0:
        kept = kept[: math.ceil(top_fraction * len(kept))]
    return kept


def save_word_counts(counts: Counter, path: str) -> None:
    """Write ``word<TAB>count`` lines, most frequent first (temporary name + rename).

    The directory is created if missing; nothing is left behind on failure.
    """
    from megatron_prealign.platform.files import atomic_open

    with atomic_open(path) as f:
        for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])):
            f.write(f"{w}\t{c}\n")


def load_word_counts(path: str) -> Counter:
    """Read a file written by :func:`save_word_counts`.

    Raises:
        FileNotFoundError / ValueError: one line naming ``path:line``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--word-counts: no such file: {path}")
    counts: Counter = Counter()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            word, sep, num = line.rpartition("\t")
            if not sep or not word or not num.isdigit():
                raise ValueError(f"{path}:{lineno}: expected 'word<TAB>count', got {line[:60]!r}")
            counts[word] += int(num)
    return counts
