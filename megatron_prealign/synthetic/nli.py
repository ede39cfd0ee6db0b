"""A built-in NLI task in the XNLI format, generated from the built-in corpus's grammar.

The quickstart evaluates zero-shot cross-lingual transfer (paper §4.2, "ZS-CLT") without
downloading XNLI: premise/hypothesis pairs are generated from the word lists of
:mod:`megatron_prealign.synthetic.english`, so every word is one the pretrained model has seen.
En-Clone test = the English test cloned token by token by ``tools/eval_xnli.py``.

A premise is one clause ``SUBJECT VERB OBJECT [in PLACE].`` whose noun phrases may carry
adjectives. The hypothesis is derived from it by one rule, which fixes the label:

* **entailment** — the premise with information removed (adjectives and/or the place dropped),
  or the premise restated unchanged;
* **neutral** — the premise with information added that it does not state (an extra adjective
  on a bare noun, a place where the premise has none);
* **contradiction** — the premise negated (``never`` before the verb) or one of its adjectives
  replaced by its antonym (``old`` -> ``young``).

Neutral (add an adjective) and contradiction (swap an adjective for its antonym) use the same
words, and entailment (drop) and neutral (add) differ only in which sentence has more, so the
labels cannot be read off the hypothesis alone: the classifier has to compare the two.
Labels are balanced (one third each). The output depends only on ``(seed, sizes)``.

Files (``write_xnli_task``): ``train.tsv`` in the XNLI-MT layout (``premise hypo label``, as
``multinli.train.en.tsv``) and ``xnli.dev.tsv`` / ``xnli.test.tsv`` in the XNLI 1.0 layout
(``language gold_label ... sentence1 sentence2 ...``, language ``en``), the files
``tools/eval_xnli.py`` reads::

    python -c "from megatron_prealign.synthetic.nli import *; write_xnli_task('nli', NLITaskConfig())"
    python tools/eval_xnli.py --load ckpt --train-file nli/train.tsv --dev-file nli/xnli.dev.tsv \\
        --test-file nli/xnli.test.tsv --languages en,en_clone --output results/xnli.json
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from megatron_prealign.eval.nli_formats import XNLI_TSV_COLUMNS
from megatron_prealign.platform.files import write_text_atomic
from megatron_prealign.synthetic.english import ADJECTIVES, DETERMINERS, NAMES, NOUNS, PLACES, VERBS_PAST

LABELS: Tuple[str, str, str] = ("entailment", "neutral", "contradiction")
"""Label names in index order (the XNLI convention)."""

ANTONYMS: Dict[str, str] = {}
for _a, _b in (
    ("old", "young"), ("small", "large"), ("quiet", "loud"), ("bright", "dark"), ("warm", "cold"),
    ("happy", "sad"), ("rich", "poor"), ("heavy", "light"), ("wide", "narrow"), ("deep", "shallow"),
    ("early", "late"), ("simple", "difficult"), ("tall", "short"), ("soft", "hard"),
    ("empty", "full"), ("clean", "dirty"), ("sweet", "bitter"), ("calm", "angry"),
):
    ANTONYMS[_a], ANTONYMS[_b] = _b, _a
"""Adjective antonym pairs, both directions (all words of the built-in grammar)."""
assert set(ANTONYMS) <= set(ADJECTIVES)

_ADJ = sorted(ANTONYMS)
_DETS = [d for d in DETERMINERS if d not in ("every", "each", "one", "some")]  # definite-ish: "a" stays


@dataclass
class NLITaskConfig:
    """Sizes and seed of the generated NLI task."""

    train: int = 3000
    """Training pairs (English)."""
    dev: int = 300
    """Dev pairs (English; model selection)."""
    test: int = 600
    """Test pairs (English; the En-Clone test is this file cloned)."""
    seed: int = 4321
    """Seed; the files depend only on this and the sizes."""


@dataclass
class _NP:
    det: Optional[str]
    adjs: List[str]
    noun: str

    def words(self, adjs: Optional[List[str]] = None) -> List[str]:
        if self.det is None:  # a name
            return [self.noun]
        return [self.det] + list(self.adjs if adjs is None else adjs) + [self.noun]


def _np(rng: random.Random) -> _NP:
    if rng.random() < 0.2:
        return _NP(None, [], rng.choice(NAMES))
    adjs = [rng.choice(_ADJ)] if rng.random() < 0.6 else []
    return _NP(rng.choice(_DETS), adjs, rng.choice(NOUNS))


def _clause(subj: List[str], verb: List[str], obj: List[str], place: Optional[str]) -> str:
    words = subj + verb + obj + (["in", place] if place else [])
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def make_pair(rng: random.Random, label: int) -> Tuple[str, str]:
    """One ``(premise, hypothesis)`` pair whose relation is ``label`` (0/1/2)."""
    while True:
        subj, obj = _np(rng), _np(rng)
        verb = rng.choice(VERBS_PAST)
        place = rng.choice(PLACES) if rng.random() < 0.4 else None
        premise = _clause(subj.words(), [verb], obj.words(), place)
        adjective_nps = [np_ for np_ in (subj, obj) if np_.adjs]
        bare_nps = [np_ for np_ in (subj, obj) if np_.det is not None and not np_.adjs]
        if label == 0:  # entailment: drop information (or restate)
            options = (["drop_adj"] if adjective_nps else []) + (["drop_place"] if place else [])
            kind = rng.choice(options + ["same"])
            if kind == "drop_adj":
                target = rng.choice(adjective_nps)
                hyp = _clause(subj.words([] if target is subj else None), [verb],
                              obj.words([] if target is obj else None), place if rng.random() < 0.5 else None)
            elif kind == "drop_place":
                hyp = _clause(subj.words(), [verb], obj.words(), None)
            else:
                hyp = premise
            return premise, hyp
        if label == 1:  # neutral: add information the premise does not state
            options = (["add_adj"] if bare_nps else []) + ([] if place else ["add_place"])
            if not options:
                continue
            if rng.choice(options) == "add_adj":
                target = rng.choice(bare_nps)
                extra = [rng.choice(_ADJ)]
                hyp = _clause(subj.words(extra if target is subj else None), [verb],
                              obj.words(extra if target is obj else None), place)
            else:
                hyp = _clause(subj.words(), [verb], obj.words(), rng.choice(PLACES))
            return premise, hyp
        # contradiction: negate, or swap an adjective for its antonym
        if adjective_nps and rng.random() < 0.5:
            target = rng.choice(adjective_nps)
            flipped = [ANTONYMS[target.adjs[0]]]
            hyp = _clause(subj.words(flipped if target is subj else None), [verb],
                          obj.words(flipped if target is obj else None), place)
        else:
            hyp = _clause(subj.words(), ["never", verb], obj.words(), place)
        return premise, hyp


def generate_pairs(n: int, seed: int) -> List[Tuple[str, str, int]]:
    """``n`` ``(premise, hypothesis, label)`` triples, labels cycling 0, 1, 2 (balanced) then shuffled."""
    rng = random.Random(seed)
    out = [(*make_pair(rng, i % 3), i % 3) for i in range(n)]
    rng.shuffle(out)
    return out


def _xnli_row(premise: str, hyp: str, label: int, pair_id: int) -> str:
    row = dict.fromkeys(XNLI_TSV_COLUMNS, "")
    row.update(language="en", gold_label=LABELS[label], sentence1=premise, sentence2=hyp, promptID=str(pair_id),
               pairID=str(pair_id), genre="synthetic", label1=LABELS[label], sentence1_tokenized=premise,
               sentence2_tokenized=hyp, match="True")
    return "\t".join(row[c] for c in XNLI_TSV_COLUMNS)


def write_xnli_task(output_dir: str, config: NLITaskConfig) -> Dict[str, str]:
    """Write ``train.tsv`` (XNLI-MT layout) and ``xnli.dev.tsv`` / ``xnli.test.tsv`` (XNLI 1.0).

    Dev and test pairs are drawn from seeds distinct from the training seed; a test premise may
    still occur in training (the grammar is small), the hypothesis rule is what is tested.

    Returns:
        ``{"train": path, "dev": path, "test": path}``.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = {k: os.path.join(output_dir, name) for k, name in
             (("train", "train.tsv"), ("dev", "xnli.dev.tsv"), ("test", "xnli.test.tsv"))}
    train = generate_pairs(config.train, config.seed)
    write_text_atomic(paths["train"], "\n".join(["premise\thypo\tlabel"] + [f"{p}\t{h}\t{LABELS[l]}" for p, h, l in train]) + "\n")
    for split, n, offset in (("dev", config.dev, 1), ("test", config.test, 2)):
        rows = generate_pairs(n, config.seed * 1000003 + offset)
        lines = ["\t".join(XNLI_TSV_COLUMNS)] + [_xnli_row(p, h, l, i) for i, (p, h, l) in enumerate(rows)]
        write_text_atomic(paths[split], "\n".join(lines) + "\n")
    return paths
