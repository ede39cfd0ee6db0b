"""Per-language perplexity on held-out binarized data, split into seen/unseen words (paper Fig. 6).

Windowing (exactly): each document of the Megatron ``.bin/.idx`` dataset is scored on its own
(no context crosses a document boundary). A document of ``n`` tokens is cut into windows
``tokens[k*L : k*L + L + 1]`` for ``k = 0, 1, ...`` with ``L = seq_length``: consecutive
windows share one token, so every token except the document's first is predicted exactly once,
with between 1 and ``L`` tokens of context; each window starts without memory of the previous
one. The last window may be shorter. Perplexity is ``exp(sum of token NLL / predicted tokens)``.

Words (for seen/unseen): a word is a run of tokens that starts at a word-start token
(the tokenizer's ``word_start_mask``: GPT-2 ``Ġ``, SentencePiece ``▁``, special tokens) and
extends to the next word-start token. Punctuation tokens (decoded text made only of
punctuation or symbols) and special tokens are split off into their own pieces and counted as
*other*, so ``dog,`` is the word ``dog`` plus the piece ``,``; a whitespace-only token (a
lone ``Ġ``) belongs to the word it opens, and a piece of whitespace only is *other*. A word's loss is the
sum of its tokens' NLL; words containing the document's first token (never predicted) are left
out of the split. A word is *seen* when its token sequence is exactly one the alignment table
holds for that language: the source words' ids for the table's source language (English), the
translations' ids for a target language, and for En-Clone the cloned ids of the source words
(or ``en_clone`` translations when the table lists them). Seen/unseen perplexities are
token-level over the tokens of those words.

Known limitation: for scripts without spaces (Chinese) word-start runs span whole clauses, so
almost every "word" is unseen; the split is meaningful for space-delimited languages.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from megatron_prealign.eval.scoring import pad_batch, token_logprobs, model_device


@dataclass
class PerplexityConfig:
    """How :func:`evaluate_perplexity` reads and scores a dataset."""

    seq_length: int
    """Window length L (tokens predicted per window at most)."""
    batch_size: int = 8
    """Windows per forward pass."""
    max_documents: Optional[int] = None
    """Score only the first N documents (default: all)."""
    max_tokens: Optional[int] = None
    """Stop after the document that crosses this many tokens (default: no limit)."""


def document_windows(num_tokens: int, seq_length: int) -> List[Tuple[int, int]]:
    """``(start, end)`` slices of a document of ``num_tokens`` tokens (see module docstring)."""
    if seq_length < 1:
        raise ValueError(f"seq_length must be >= 1, got {seq_length}")
    starts = range(0, num_tokens - 1, seq_length)
    return [(start, min(start + seq_length + 1, num_tokens)) for start in starts]


def iter_documents(prefix: str, max_documents: Optional[int] = None) -> Iterator[np.ndarray]:
    """Yield each document of a Megatron ``.bin/.idx`` dataset as one int64 array.

    Raises:
        FileNotFoundError: ``{prefix}.bin``/``.idx`` missing (one line).
    """
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    if not IndexedDataset.exists(prefix):
        raise FileNotFoundError(f"{prefix}: no Megatron dataset ({prefix}.bin/.idx not found)")
    ds = IndexedDataset(prefix, mmap=True)
    doc_idx = ds.document_indices
    n = len(doc_idx) - 1
    if max_documents is not None:
        n = min(n, max_documents)
    for d in range(n):
        parts = [np.asarray(ds[j], dtype=np.int64) for j in range(int(doc_idx[d]), int(doc_idx[d + 1]))]
        yield np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@torch.no_grad()
def document_token_nll(model: torch.nn.Module, documents: Sequence[np.ndarray], seq_length: int, batch_size: int = 8, pad_id: int = 0) -> List[np.ndarray]:
    """Per-token negative log-likelihood for each document (``nan`` at position 0 / unpredicted).

    Windows of all given documents are batched together.
    """
    out = [np.full(len(doc), np.nan, dtype=np.float64) for doc in documents]
    windows = [(d, s, e) for d, doc in enumerate(documents) for (s, e) in document_windows(len(doc), seq_length)]
    device = model_device(model)
    for b in range(0, len(windows), batch_size):
        chunk = windows[b : b + batch_size]
        seqs = [documents[d][s:e].tolist() for d, s, e in chunk]
        tokens, _ = pad_batch(seqs, pad_id, device)
        lp = token_logprobs(model, tokens).double().cpu().numpy()
        for row, (d, s, e) in enumerate(chunk):
            out[d][s + 1 : e] = -lp[row, : e - s - 1]
    return out


def token_classes(tokenizer: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Per-vocabulary flags ``(other, space)`` from each token's decoded text.

    ``other``: special tokens and tokens whose text (stripped) is non-empty and made only of
    punctuation/symbols; ``space``: tokens that decode to whitespace only (GPT-2 ``Ġ``/``Ċ``,
    a lone ``▁``; how words treat them: module docstring).
    """
    v = int(tokenizer.vocab_size)
    other = np.zeros(v, dtype=bool)
    space = np.zeros(v, dtype=bool)
    specials = set(int(i) for i in (getattr(tokenizer, "special_ids", None) or [tokenizer.eod]))
    for i in range(v):
        if i in specials:
            other[i] = True
            continue
        try:
            text = tokenizer.detokenize([i])
        except Exception:  # ids some tokenizers refuse to decode (e.g. unused clone specials)
            other[i] = True
            continue
        stripped = text.strip()
        if not stripped:
            space[i] = True
        elif "\ufffd" not in stripped and all(unicodedata.category(ch)[0] in "PS" for ch in stripped):
            # (a byte-level piece of a multi-byte character decodes to U+FFFD: part of a word)
            other[i] = True
    return other, space


def segment_words(tokens: np.ndarray, word_start: np.ndarray, other: np.ndarray,
                  space: Optional[np.ndarray] = None) -> List[Tuple[int, int, bool]]:
    """Split a token array into ``(start, end, is_word)`` pieces (see module docstring).

    Args:
        tokens: token ids.
        word_start: per-vocabulary bool, ``True`` for word-opening tokens.
        other: per-vocabulary bool, ``True`` for punctuation/special tokens (pieces of their own).
        space: per-vocabulary bool, ``True`` for whitespace-only tokens (a piece of only these
            is not a word).
    """
    pieces: List[Tuple[int, int, bool]] = []
    start = 0
    n = len(tokens)
    for t in range(1, n + 1):
        if t < n and not (word_start[tokens[t]] or other[tokens[t]] or other[tokens[t - 1]]):
            continue  # token t continues the current piece
        if start < t:
            ids = tokens[start:t]
            non_word = other[ids] if space is None else (other[ids] | space[ids])
            pieces.append((start, t, not bool(non_word.all())))
        start = t
    return pieces


def seen_sequences(table: Any, language: str, clone_offset: Optional[int] = None) -> Set[Tuple[int, ...]]:
    """Token sequences the alignment table holds for ``language``.

    Args:
        table: an ``AlignmentTable`` (``entries`` with ``ids`` and ``translations``; optional
            ``source_language``, default ``en``).
        language: ``en`` (source), a target code, or ``en_clone`` (``en-clone`` accepted).
        clone_offset: for ``en_clone`` without clone translations, the id offset V of clones.
    """
    source = getattr(table, "source_language", "en") or "en"
    language = "en_clone" if language == "en-clone" else language
    out: Set[Tuple[int, ...]] = set()
    for entry in table.entries:
        if language == source:
            out.add(tuple(int(i) for i in entry.ids))
            continue
        trans = (entry.translations or {}).get(language)
        if trans:
            out.update(tuple(int(i) for i in t.ids) for t in trans)
        elif language == "en_clone" and clone_offset is not None:
            out.add(tuple(int(i) + clone_offset for i in entry.ids))
    return out


@dataclass
class _Acc:
    nll: float = 0.0
    tokens: int = 0
    words: int = 0

    def add(self, nll: float, tokens: int, words: int = 0) -> None:
        self.nll += nll
        self.tokens += tokens
        self.words += words

    def to_dict(self) -> dict:
        per_token = self.nll / self.tokens if self.tokens else float("nan")
        per_word = self.nll / self.words if self.words else float("nan")
        return {"ppl": math.exp(per_token), "nll_per_token": per_token, "tokens": self.tokens,
                "words": self.words, "word_ppl": math.exp(per_word)}


@dataclass
class PerplexityResult:
    """Perplexity of one language's held-out data."""

    language: str
    """Language code."""
    overall: Dict[str, float]
    """``ppl``, ``nll_per_token``, ``tokens`` over every predicted token."""
    documents: int
    """Documents scored."""
    windows: int
    """Windows (forward rows) scored."""
    seen: Optional[Dict[str, float]] = None
    """Tokens of words in the alignment table (``ppl``, ``tokens``, ``words``, ``word_ppl``)."""
    unseen: Optional[Dict[str, float]] = None
    """Tokens of words not in the table."""
    other: Optional[Dict[str, float]] = None
    """Punctuation/special pieces (outside the seen/unseen split)."""


def evaluate_perplexity(
    model: torch.nn.Module,
    documents: Iterable[np.ndarray],
    config: PerplexityConfig,
    language: str,
    word_start: Optional[np.ndarray] = None,
    other_mask: Optional[np.ndarray] = None,
    seen: Optional[Set[Tuple[int, ...]]] = None,
    space_mask: Optional[np.ndarray] = None,
    pad_id: int = 0,
    progress: bool = False,
) -> PerplexityResult:
    """Perplexity of ``model`` on ``documents``; with ``word_start``/``seen``, the Fig. 6 split.

    Args:
        model: this rank's ``GPTModel`` in eval mode (PP=1).
        documents: token arrays, one per document.
        config: windowing and limits.
        language: recorded in the result.
        word_start: vocabulary-sized word-start flags (needed for the split).
        other_mask: vocabulary-sized punctuation/special flags (default: none).
        space_mask: vocabulary-sized whitespace-only flags (default: none).
        seen: token sequences counted as seen (needed for the split).
        pad_id: padding id (never scored).
        progress: show a tqdm bar.
    """
    overall, acc_seen, acc_unseen, acc_other = _Acc(), _Acc(), _Acc(), _Acc()
    split = word_start is not None and seen is not None
    if split and other_mask is None:
        other_mask = np.zeros_like(word_start)
    n_docs = n_windows = total = 0
    pending: List[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"ppl {language}", unit="doc")

    def flush() -> None:
        nonlocal n_windows
        nlls = document_token_nll(model, pending, config.seq_length, config.batch_size, pad_id)
        for doc, nll in zip(pending, nlls):
            n_windows += len(document_windows(len(doc), config.seq_length))
            pred = ~np.isnan(nll)
            overall.add(float(nll[pred].sum()), int(pred.sum()))
            if not split:
                continue
            for s, e, is_word in segment_words(doc, word_start, other_mask, space_mask):
                piece = nll[s:e]
                if np.isnan(piece).any():
                    continue
                acc = acc_other if not is_word else (
                    acc_seen if tuple(int(t) for t in doc[s:e]) in seen else acc_unseen)
                acc.add(float(piece.sum()), e - s, 1)
        if bar is not None:
            bar.update(len(pending))
        pending.clear()

    for doc in documents:
        if config.max_documents is not None and n_docs >= config.max_documents:
            break
        if config.max_tokens is not None and total >= config.max_tokens:
            break
        pending.append(np.asarray(doc, dtype=np.int64))
        n_docs += 1
        total += len(doc)
        if sum(max(len(d) - 1, 0) for d in pending) >= config.batch_size * config.seq_length:
            flush()
    if pending:
        flush()
    if bar is not None:
        bar.close()
    res = PerplexityResult(language=language, overall=overall.to_dict(), documents=n_docs, windows=n_windows)
    if split:
        res.seen, res.unseen, res.other = acc_seen.to_dict(), acc_unseen.to_dict(), acc_other.to_dict()
    return res
