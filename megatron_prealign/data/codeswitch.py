"""Input-only codeswitching of Megatron token streams (PreAlign, Li et al. 2024, Sec. 3.2).

During pretraining about ``ratio`` (5% in the paper) of the words of the *input* are replaced by
a translation taken from the alignment table. In ``input-only`` mode the language-modelling loss
for predicting the substituted subwords is masked out (Eq. 6), so the model never learns to
*generate* the other language mid-sentence; the word after the substitution is still predicted.
``vanilla`` mode (Eq. 5, Table 4's baseline) substitutes the same way and masks nothing.

Usage (one document at a time, e.g. while binarizing; or a whole ``.bin/.idx`` dataset)::

    tok = build_tokenizer(...)
    table = AlignmentTable.load("en-de.table.jsonl")
    switcher = Codeswitcher(table, tok.word_start_mask(), CodeswitchConfig(ratio=0.05),
                            special_ids=tok.special_ids)
    tokens, mask = switcher.apply(np.asarray(ids, np.int32), doc_index)
    switcher.process_dataset("corpus_text_document", "corpus_cs_text_document", threads=8)

The pass runs in C++ (``csrc/codeswitch.cpp``, ``megatron_prealign._C.CodeswitchEngine``);
its pure-Python twin, :func:`~megatron_prealign.data.codeswitch_reference.reference_codeswitch`,
produces byte-identical output; the table is merged by :mod:`.codeswitch_table`. The
specification all follow:

Words.
    Position ``p`` of a document opens a word iff ``p == 0``, or ``word_start_mask[t[p]]``, or
    ``t[p]`` is a special token, or ``t[p-1]`` is a special token or an *opener* (special tokens
    such as EOD are words of their own; an opener is a token after which a bare, not
    space-prefixed word may begin: a newline, tab, quote, bracket; see
    :mod:`megatron_prealign.alignment.boundaries`). A word runs from its opening position up
    to, not including, the next opening position or the end of the document: a run cut by the
    document end *is* the full word, and a word never crosses a document boundary.

Whole words (the table's word tokenizer).
    A word ``[i, j)`` whose tokens equal a table source is substituted only if it *ends* there as
    NLTK would split the text: ``j`` is the document end, or ``follow[t[j]]`` is ``FOLLOW_YES``,
    or ``FOLLOW_IF_SPACE`` and ``t[j+1]`` (or the document end) leads with whitespace or a split
    character, or ``FOLLOW_IF_NOT_DIGIT`` and ``t[j+1]`` does not lead with a digit. So ``can`` in
    ``can't``, ``e`` in ``e.g.``, ``J`` in ``J.P.`` and ``well`` in ``well-known`` are never
    replaced; ``John`` in ``John's`` is. Without boundaries (synthetic vocabularies) every token
    ends a word and only special tokens are openers.

Bare forms.
    A word at the start of a document or after an opener is tokenized without its leading space
    (GPT-2: ``The`` rather than ``ĠThe``). Table entries carry that form as ``bare_ids`` (and
    each translation its ``bare_ids``): the bare source sequence is a candidate of its own whose
    translations are the bare translation forms, so ``\nThe`` becomes ``\nDie``, not
    ``\n Die``. A bare source that equals a space-form source of any entry is left out.

Candidates.
    A word is a candidate iff its token sequence equals the ``ids`` of a table entry that has at
    least one translation into an allowed language (``languages=None`` allows all). Several
    entries may share one token sequence: their translations are merged per language, in table
    order, dropping a translation whose ``ids`` already occur for that language. Languages are
    ordered by name; a candidate's *groups* are its allowed languages with >= 1 translation. A
    word made of one special token is never a candidate; entries whose ``ids`` hold a word-start
    token after their first position can never match (counted in ``unreachable_entries``).

Randomness (counter-based; output depends only on seed, document index and word offset).
    ``mix64`` is the splitmix64 finalizer over uint64 (all arithmetic mod 2**64)::

        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        z = z ^ (z >> 31)

    Document ``d`` owns a splitmix64 stream keyed by the seed; the word opening at offset ``o``
    of the ORIGINAL document takes output ``o`` of that stream::

        G     = 0x9E3779B97F4A7C15
        key_d = mix64(mix64(seed + G) ^ d)
        h     = mix64(key_d + (o + 1) * G)
        substitute iff the word is a candidate, ends a whole word, and (h >> 11) * 2**-53 < ratio
        group       = groups[(mix64(h + G) * len(groups)) >> 64]       (a language, uniformly)
        translation = group[(mix64(h + 2 * G) * len(group)) >> 64]    (a translation, uniformly)

    The index is the high word of a 64x64-bit product (Lemire's reduction, no division); its
    bias is below ``n / 2**64``, i.e. nil in practice. The language is chosen
    uniformly among the word's allowed languages, then a translation uniformly within it. The
    draw does not depend on the word, so the C++ pass draws first and looks a word up in the
    table only for the ~``ratio`` of words whose draw succeeds.

Output.
    Tokens: the document with each substituted word replaced by the translation's ids (the
    document may get longer or shorter). Mask (uint8, same length as the output tokens): 1
    everywhere, except 0 at the positions of substituted subwords in ``input-only`` mode.
    Training uses ``mask[t + 1]`` for the label of position ``t`` (docs/interfaces.md).

Document index.
    :func:`codeswitch_dataset` uses the index of the Megatron *sequence* (one entry of the
    ``.idx``; one per document unless the corpus was binarized with ``--split-sentences``) as
    ``doc_index``, so results do not depend on thread count or chunking.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from megatron_prealign.data.codeswitch_table import as_masks, boundary_arrays, compile_table

logger = logging.getLogger(__name__)

__all__ = [
    "CodeswitchConfig",
    "CodeswitchStats",
    "Codeswitcher",
    "codeswitch_dataset",
]

MODES = ("input-only", "vanilla")

_M64 = (1 << 64) - 1


@dataclasses.dataclass
class CodeswitchConfig:
    """Configuration of the codeswitching pass."""

    ratio: float = 0.05
    """Probability that a candidate word (one with a translation in the table) is replaced.
    The paper uses 5%. Must lie in [0, 1]."""

    mode: str = "input-only"
    """``"input-only"``: mask the loss for predicting the substituted subwords (paper Eq. 6).
    ``"vanilla"``: substitute the same way, mask nothing (Eq. 5)."""

    seed: int = 1234
    """Seed of the counter-based random stream; with the same seed, input and table the output
    is identical whatever the thread count or chunking. Must lie in [0, 2**64)."""

    languages: Optional[Tuple[str, ...]] = None
    """Target languages allowed as substitutes; ``None`` allows every language of the table."""

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.ratio) <= 1.0):
            raise ValueError(f"codeswitch ratio must lie in [0, 1], got {self.ratio}")
        self.ratio = float(self.ratio)
        if self.mode not in MODES:
            raise ValueError(f"codeswitch mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (0 <= int(self.seed) <= _M64):
            raise ValueError(f"codeswitch seed must lie in [0, 2**64), got {self.seed}")
        self.seed = int(self.seed)
        if self.languages is not None:
            if isinstance(self.languages, str):
                self.languages = tuple(x for x in self.languages.split(",") if x)
            self.languages = tuple(self.languages)


@dataclasses.dataclass
class CodeswitchStats:
    """Counts gathered by a codeswitching pass (sums over the documents processed)."""

    documents: int = 0
    """Documents (Megatron sequences) processed."""
    input_tokens: int = 0
    """Tokens read."""
    output_tokens: int = 0
    """Tokens written (differs from ``input_tokens`` when translation lengths differ)."""
    words: int = 0
    """Words seen (see the module docstring for what a word is)."""
    eligible: int = 0
    """Words whose first token is the first token of some table source (a superset of the
    candidates, found without a table lookup)."""
    drawn: int = 0
    """Eligible words whose random draw fell below the ratio (these are looked up)."""
    substituted: int = 0
    """Words replaced by a translation (the drawn words that are candidates)."""
    per_language: Dict[str, int] = dataclasses.field(default_factory=dict)
    """Substituted words per target language."""

    @property
    def estimated_candidates(self) -> float:
        """Candidate words (with a translation), estimated as ``eligible * substituted / drawn``
        (the draw is independent of the word, so the drawn words are a uniform sample)."""
        return self.eligible * self.substituted / self.drawn if self.drawn else 0.0

    @property
    def substitution_ratio(self) -> float:
        """Words substituted / reachable table words (whole-word matches; estimated, see
        :attr:`estimated_candidates`); 0 when nothing was drawn."""
        reach = self.estimated_candidates
        return self.substituted / reach if reach else 0.0

    def describe(self) -> str:
        """One log line with the substitution count and the realised rates."""
        words = self.substituted / self.words if self.words else 0.0
        coverage = self.estimated_candidates / self.words if self.words else 0.0
        langs = ", ".join(f"{k}={v}" for k, v in sorted(self.per_language.items()))
        return (
            f"{self.documents} documents, {self.input_tokens} -> {self.output_tokens} tokens, "
            f"{self.words} token-level words, {self.substituted} substituted "
            f"(ratio {self.substitution_ratio:.4f} of ~{self.estimated_candidates:.0f} reachable table words; "
            f"{100 * words:.3f}% of token-level words; {langs or 'none'}); reachable table words are "
            f"~{100 * coverage:.1f}% of token-level words"
        )

    def check(self, ratio: float, where: str) -> None:
        """No silent nothing: raise when a pass that should have substituted did not.

        Substituting nothing is an error when ``ratio > 0`` and the expected number of drawn
        words (``eligible * ratio``) is at least 20 (the chance of drawing none is then below
        ``e**-20``); otherwise (ratio 0, an empty or tiny input) a warning with the counts.

        Raises:
            ValueError: one line naming ``where``.
        """
        if self.substituted:
            return
        msg = (
            f"{where}: codeswitching substituted nothing ({self.words} token-level words, "
            f"{self.eligible} starting like a table word, {self.drawn} drawn, ratio {ratio})"
        )
        if ratio > 0 and self.eligible * ratio >= 20:
            raise ValueError(msg + ": does the alignment table belong to this tokenizer and corpus?")
        logger.warning("%s", msg)


class Codeswitcher:
    """Codeswitches documents in C++ (see the module docstring for the exact algorithm).

    The table is compiled once into flat arrays and a hash map; :meth:`apply` is cheap per call
    and releases the GIL (threads share one object).

    Args:
        table: an ``AlignmentTable`` (``.entries`` with ``.ids`` and ``.translations``, and
            ``.languages``).
        word_start_mask: bool per vocabulary id (``tokenizer.word_start_mask()``); its length
            is the vocabulary size every id is checked against.
        config: ratio, mode, seed and languages.
        special_ids: token ids that are words of their own and never replaced (pass the
            tokenizer's EOD and pad).
        boundaries: the tokenizer's word boundaries
            (:func:`megatron_prealign.alignment.boundaries.word_boundaries`): whole NLTK words
            only, and bare words after newlines, quotes, brackets. None: the id-level
            segmentation alone (synthetic vocabularies without text).

    Raises:
        ValueError: the table has no source sequence with a translation into an allowed
            language (nothing could ever be substituted; names the table).
    """

    def __init__(
        self,
        table: Any,
        word_start_mask: np.ndarray,
        config: CodeswitchConfig,
        special_ids: Sequence[int] = (),
        boundaries: Any = None,
    ) -> None:
        import threading

        self.config = config
        self._ws, self._special = as_masks(word_start_mask, special_ids)
        self._opener, self._follow, self._lead = boundary_arrays(boundaries, self._special)
        self._compiled = compile_table(table, self._ws, self._special, config.languages)
        if self.num_candidates == 0:
            raise ValueError(
                f"{getattr(table, 'path', None) or 'alignment table'}: no entry has a translation"
                + (f" into {', '.join(config.languages)}" if config.languages else "")
                + ": codeswitching would substitute nothing"
            )
        self._engine = self._build_engine()
        self._lock = threading.Lock()
        self._totals = np.zeros(4 + len(self._compiled.languages), dtype=np.int64)
        self._docs = [0, 0, 0]  # documents, input tokens, output tokens seen by apply()
        if self._compiled.unreachable_entries:
            logger.warning(
                "%s: %d of %d source token sequences hold a word-start token after their first token "
                "and can never match a word (multi-word entries?)",
                getattr(table, "path", None) or "alignment table", self._compiled.unreachable_entries,
                self.num_candidates,
            )

    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary (length of the word-start mask)."""
        return int(self._ws.size)

    @property
    def languages(self) -> List[str]:
        """Allowed target languages, sorted (the order of ``CodeswitchStats.per_language``)."""
        return list(self._compiled.languages)

    @property
    def num_candidates(self) -> int:
        """Distinct source token sequences that can be substituted."""
        return int(self._compiled.src_offsets.size - 1)

    @property
    def unreachable_entries(self) -> int:
        """Candidate sequences holding a word-start token after position 0 (never match)."""
        return self._compiled.unreachable_entries

    @property
    def max_translation_id(self) -> int:
        """Largest token id a substitution can write (-1 for an empty table)."""
        return self._compiled.max_translation_id

    def _build_engine(self) -> Any:
        from megatron_prealign import _C

        c = self._compiled
        return _C.CodeswitchEngine(
            c.src_tokens,
            c.src_offsets,
            c.group_offsets,
            c.group_lang,
            c.group_trans_offsets,
            c.trans_offsets,
            c.trans_tokens,
            len(c.languages),
            self._ws,
            self._special,
            self.config.ratio,
            self.config.mode == "input-only",
            self.config.seed,
            self._opener,
            self._follow,
            self._lead,
        )

    def _stats(self, counts: np.ndarray, documents: int, n_in: int, n_out: int) -> CodeswitchStats:
        """:class:`CodeswitchStats` from the engine's counts (words, eligible, drawn,
        substituted, then one per language) and the document and token totals."""
        return CodeswitchStats(
            documents=documents, input_tokens=n_in, output_tokens=n_out, words=int(counts[0]),
            eligible=int(counts[1]), drawn=int(counts[2]), substituted=int(counts[3]),
            per_language={lang: int(c) for lang, c in zip(self.languages, counts[4:])},
        )

    def applied_stats(self) -> CodeswitchStats:
        """Counts summed over every :meth:`apply` call of this object (thread-safe)."""
        with self._lock:
            counts = self._totals.copy()
            docs, n_in, n_out = self._docs
        return self._stats(counts, docs, n_in, n_out)

    def apply(self, tokens: np.ndarray, doc_index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Codeswitch one document.

        Args:
            tokens: int32 token ids of one document (other integer dtypes are converted).
            doc_index: global index of the document in the corpus (>= 0); the random draws
                depend on it, so pass the index the document has in the output dataset.

        Returns:
            ``(tokens int32, mask uint8)`` of equal length; mask is 0 at substituted subwords in
            input-only mode.
        """
        arr = np.asarray(tokens)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"document {doc_index}: token ids must be integers, got dtype {arr.dtype}")
        out, mask, counts = self._engine.apply(arr, int(doc_index))
        with self._lock:
            self._totals += counts
            self._docs[0] += 1
            self._docs[1] += int(arr.size)
            self._docs[2] += int(out.size)
        return out, mask

    def process_dataset(
        self,
        input_prefix: str,
        output_prefix: str,
        threads: int = 1,
        chunk_tokens: int = 1 << 20,
        log_interval_s: float = 10.0,
    ) -> CodeswitchStats:
        """Codeswitches an existing Megatron ``.bin/.idx`` dataset into a new one plus its loss mask.

        Writes ``{output_prefix}.bin/.idx`` (tokens, the input's dtype, or int32 when the table's
        translation ids do not fit a uint16 input, e.g. En-Clone of a GPT-2 corpus) and
        ``{output_prefix}_lossmask.bin/.idx`` (uint8) with the input's number of sequences and
        document indices; sequence lengths change where translations differ in length, and the
        mask has the new lengths. Sequence ``i`` of the input is codeswitched with
        ``doc_index = i``. Multithreaded in C++ over blocks of about ``chunk_tokens`` input
        tokens, written in order (the output does not depend on ``threads`` or
        ``chunk_tokens``); at most ``2 * threads`` blocks are in memory whatever the corpus
        size. Outputs are written under temporary names and renamed when complete.

        Args:
            input_prefix: path prefix of the input dataset (``.bin``/``.idx``).
            output_prefix: path prefix of the output token dataset.
            threads: worker threads.
            chunk_tokens: input tokens per unit of work.
            log_interval_s: seconds between progress log lines (``logging`` at INFO).

        Returns:
            The pass's :class:`CodeswitchStats`.

        Raises:
            ValueError: one line naming the file: a broken input, a token outside the
                vocabulary, a translation id beyond int32.
        """
        from megatron_prealign.data.indexed import loss_mask_prefix, read_index, write_index
        from megatron_prealign.platform.files import atomic_paths

        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")

        in_bin, in_idx = input_prefix + ".bin", input_prefix + ".idx"
        # one-line IndexedDatasetError (a ValueError) if broken; sequences are then contiguous
        index = read_index(input_prefix)
        if index.dtype not in (np.dtype(np.uint16), np.dtype(np.int32)):
            raise ValueError(f"{in_idx}: token dtype {index.dtype.name} is not uint16 or int32")
        mask_prefix = loss_mask_prefix(output_prefix)
        outputs = [output_prefix + ".bin", output_prefix + ".idx", mask_prefix + ".bin", mask_prefix + ".idx"]
        if {os.path.realpath(in_bin), os.path.realpath(in_idx)} & {os.path.realpath(p) for p in outputs}:
            raise ValueError(f"--output-prefix {output_prefix} would overwrite the input {input_prefix}")
        lengths = index.sequence_lengths

        dtype_max = int(np.iinfo(index.dtype).max)
        if self.max_translation_id > dtype_max:
            if self.max_translation_id > np.iinfo(np.int32).max:
                raise ValueError(
                    f"{in_bin}: the alignment table has translation id {self.max_translation_id}, beyond int32"
                )
            # E.g. the En-Clone table of a GPT-2 corpus (uint16, V = 50257): clone ids reach 2V,
            # so the output must be int32. The C++ pass keeps its input's dtype, so it runs on a
            # widened temporary copy (streamed; removed afterwards).
            widened = f"{output_prefix}.int32-input.tmp-{os.getpid()}"
            logger.info(
                "%s is %s but translation ids reach %d: writing int32 output via a widened copy",
                in_bin, index.dtype.name, self.max_translation_id,
            )
            try:
                _widen_to_int32(input_prefix, index, widened)
                return self.process_dataset(widened, output_prefix, threads, chunk_tokens, log_interval_s)
            finally:
                for ext in (".bin", ".idx"):
                    if os.path.exists(widened + ext):
                        os.remove(widened + ext)

        total_tokens = int(lengths.astype(np.int64).sum())
        progress = _Progress(total_tokens, log_interval_s, f"codeswitch {os.path.basename(input_prefix)}")
        t0 = time.monotonic()
        with atomic_paths(outputs) as tmp:
            new_lengths, counts = self._engine.process_dataset(
                in_bin, tmp[0], tmp[2], np.ascontiguousarray(lengths), np.ascontiguousarray(index.sequence_pointers),
                index.dtype.itemsize, int(threads), int(chunk_tokens), progress,
            )
            n_out = int(new_lengths.astype(np.int64).sum())
            stats = self._stats(counts, int(lengths.size), total_tokens, n_out)
            stats.check(self.config.ratio, in_bin)  # before the rename: nothing is written on error
            for path, dtype in ((tmp[1], index.dtype), (tmp[3], np.uint8)):
                write_index(path, dtype, new_lengths, index.document_indices, index.sequence_modes)
        progress(total_tokens, int(lengths.size), force=True)
        logger.info("codeswitch done in %.1fs: %s", time.monotonic() - t0, stats.describe())
        return stats


# --------------------------------------------------------------------------------------------
# Rewriting a Megatron .bin/.idx dataset
# --------------------------------------------------------------------------------------------


def _widen_to_int32(in_prefix: str, index: Any, out_prefix: str, chunk_tokens: int = 1 << 24) -> None:
    """Copy a uint16 dataset (contiguous: checked by ``read_index``) to ``{out_prefix}.bin/.idx`` as
    int32, streamed in chunks."""
    from megatron_prealign.data.indexed import write_index

    total = int(index.sequence_lengths.astype(np.int64).sum())
    with open(out_prefix + ".bin", "wb") as out:
        if total:
            src = np.memmap(in_prefix + ".bin", dtype=index.dtype, mode="r", shape=(total,))
            for start in range(0, total, chunk_tokens):
                out.write(np.asarray(src[start : start + chunk_tokens], dtype=np.int32).tobytes())
            del src
    write_index(out_prefix + ".idx", np.int32, index.sequence_lengths, index.document_indices, index.sequence_modes)


class _Progress:
    """Megatron-style progress lines with rate and ETA, at most one per ``interval_s``."""

    def __init__(self, total_tokens: int, interval_s: float, name: str) -> None:
        self.total = max(int(total_tokens), 1)
        self.interval = interval_s
        self.name = name
        self.start = time.monotonic()
        self.last = self.start

    def __call__(self, done_tokens: int, done_sequences: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = done_tokens / elapsed
        eta = (self.total - done_tokens) / rate if rate > 0 else float("inf")
        eta_s = f"{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}" if eta != float("inf") else "?"
        logger.info(
            "%s: %d sequences, %.1fM/%.1fM tokens (%.1f%%) | %.2fM tokens/s | elapsed %.1fs | ETA %s",
            self.name, done_sequences, done_tokens / 1e6, self.total / 1e6,
            100.0 * done_tokens / self.total, rate / 1e6, elapsed, eta_s,
        )


def codeswitch_dataset(
    input_prefix: str,
    output_prefix: str,
    table: Any,
    word_start_mask: np.ndarray,
    config: CodeswitchConfig,
    threads: int = 1,
    special_ids: Sequence[int] = (),
    chunk_tokens: int = 1 << 20,
    log_interval_s: float = 10.0,
    boundaries: Any = None,
) -> CodeswitchStats:
    """Codeswitches an existing Megatron ``.bin/.idx`` dataset into a new one plus its loss mask.

    Builds a :class:`Codeswitcher` and runs :meth:`Codeswitcher.process_dataset` (see there).

    Args:
        input_prefix: path prefix of the input dataset (``.bin``/``.idx``).
        output_prefix: path prefix of the output token dataset.
        table: the alignment table.
        word_start_mask: bool per vocabulary id (the tokenizer's ``word_start_mask()``).
        config: ratio, mode, seed and languages.
        threads: worker threads.
        special_ids: ids that are words of their own, never replaced (EOD, pad).
        chunk_tokens: input tokens per unit of work.
        log_interval_s: seconds between progress log lines.
        boundaries: the tokenizer's word boundaries (see :class:`Codeswitcher`).

    Returns:
        The pass's :class:`CodeswitchStats`.
    """
    switcher = Codeswitcher(table, word_start_mask, config, special_ids, boundaries)
    return switcher.process_dataset(input_prefix, output_prefix, threads, chunk_tokens, log_interval_s)
