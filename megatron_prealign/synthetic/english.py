"""The built-in English corpus: a seeded probabilistic grammar, no download.

The quickstart and the tests need English text on a machine with no network and no corpora.
This module generates it from a small grammar over a word list that ships in this file (written
for the project, not taken from a third-party corpus). Words are drawn with Zipf-like weights, so
the corpus has the long-tailed frequency profile the alignment table's ``--min-count`` and
``--top-fraction`` are meant for: a few hundred words occur thousands of times, many occur rarely.

The output depends only on ``(seed, num_documents)``: sampling uses :class:`random.Random`, whose
``random()`` stream CPython keeps stable across versions, and nothing reads the environment.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
from dataclasses import dataclass
from typing import Iterator, List, Sequence, Tuple

DETERMINERS = ["the", "a", "this", "that", "every", "some", "each", "one", "my", "our", "their", "his", "her"]
ADJECTIVES = (
    "old young small large quiet loud bright dark green red blue white black golden silver warm cold "
    "happy sad clever brave gentle proud tired busy careful strange famous ancient modern rich poor "
    "heavy light wide narrow deep shallow early late simple difficult honest curious patient angry "
    "calm wild tall short soft hard fresh empty full clean dirty sweet bitter friendly lonely"
).split()
NOUNS = (
    "farmer teacher doctor child king queen soldier merchant sailor painter writer student baker "
    "hunter driver singer judge priest neighbour village city river mountain forest garden "
    "house school market bridge castle church road field island harbour tower library kitchen window "
    "door table chair book letter song story picture horse dog cat bird fish wolf bear sheep cow "
    "apple bread cheese wine water milk stone tree flower boat train ship coin sword lamp clock "
    "winter summer morning evening night storm wind rain snow fire music dream friend family stranger"
).split()
VERBS_PAST = (
    "saw found visited built painted wrote sold bought carried followed helped watched loved feared "
    "remembered forgot opened closed cleaned crossed climbed described discovered met called asked "
    "answered taught learned left reached guarded brought kept lost won"
).split()
INTRANSITIVE_PAST = "slept laughed waited arrived danced sang worked travelled rested smiled wandered listened".split()
ADVERBS = "slowly quickly quietly happily carefully suddenly often rarely always never again together alone early late".split()
PREPOSITIONS = "near behind beside under above across through beyond inside outside around toward".split()
CONJUNCTIONS = ["and", "but", "while", "because", "so", "although"]
NAMES = (
    "Anna Boris Clara David Elena Felix Greta Hugo Irene Jonas Karla Leon Maria Nikolai Olga Peter "
    "Rosa Stefan Tanya Victor Wanda Yuri Zora Martin Lena Oskar Ida Pavel Sofia Emil"
).split()
PLACES = (
    "Oakford Riverton Millbrook Stonehaven Eastwick Northvale Ashbury Greenhill Lakemont Westmarsh "
    "Brightwater Foxley Redcliff Elmstead Highmoor Kingsport Silverdale Thornbury Winterfield Amberlea"
).split()


@dataclass
class SyntheticCorpusConfig:
    """How much built-in English text to generate, and from which seed."""

    num_documents: int = 20000
    """Documents to generate (~60 words each on average: 20k documents ~ 1.2M words)."""
    min_sentences: int = 2
    """Fewest sentences in a document."""
    max_sentences: int = 8
    """Most sentences in a document."""
    seed: int = 1234
    """Seed of the generator; the text depends only on this and the sizes above."""


@functools.lru_cache(maxsize=None)
def _zipf_cum_weights(n: int) -> List[float]:
    return list(itertools.accumulate(1.0 / (rank + 2.0) for rank in range(n)))


class _Grammar:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, words: Sequence[str]) -> str:
        return self.rng.choices(words, cum_weights=_zipf_cum_weights(len(words)), k=1)[0]

    def noun_phrase(self) -> List[str]:
        if self.rng.random() < 0.15:
            return [self.pick(NAMES)]
        out = [self.pick(DETERMINERS)]
        if self.rng.random() < 0.55:
            out.append(self.pick(ADJECTIVES))
            if self.rng.random() < 0.15:
                out.append(self.pick(ADJECTIVES))
        out.append(self.pick(NOUNS))
        if self.rng.random() < 0.1:
            out += ["of", self.pick(PLACES)]
        return out

    def prep_phrase(self) -> List[str]:
        if self.rng.random() < 0.3:
            return ["in", self.pick(PLACES)]
        return [self.pick(PREPOSITIONS)] + self.noun_phrase()

    def verb_phrase(self) -> List[str]:
        r = self.rng.random()
        if r < 0.5:
            out = [self.pick(VERBS_PAST)] + self.noun_phrase()
            if self.rng.random() < 0.35:
                out += self.prep_phrase()
        elif r < 0.7:
            out = [self.pick(INTRANSITIVE_PAST)]
            if self.rng.random() < 0.6:
                out.append(self.pick(ADVERBS))
        elif r < 0.85:
            out = ["was", self.pick(ADJECTIVES)]
        else:
            out = [self.pick(VERBS_PAST), "that"] + self.noun_phrase() + ["was", self.pick(ADJECTIVES)]
        return out

    def sentence(self) -> str:
        r = self.rng.random()
        if r < 0.55:
            words = self.noun_phrase() + self.verb_phrase()
        elif r < 0.75:
            words = self.noun_phrase() + self.verb_phrase() + [self.pick(CONJUNCTIONS)] + self.noun_phrase() + self.verb_phrase()
        elif r < 0.9:
            words = self.prep_phrase() + [","] + self.noun_phrase() + self.verb_phrase()
        else:
            words = ["when"] + self.noun_phrase() + self.verb_phrase() + [","] + self.noun_phrase() + self.verb_phrase()
        text = " ".join(words).replace(" ,", ",")
        return text[0].upper() + text[1:] + "."


def generate_documents(config: SyntheticCorpusConfig) -> Iterator[str]:
    """Yield the documents of the built-in corpus, deterministically for ``config``."""
    rng = random.Random(config.seed)
    grammar = _Grammar(rng)
    for _ in range(config.num_documents):
        n = rng.randint(config.min_sentences, config.max_sentences)
        yield " ".join(grammar.sentence() for _ in range(n))


def write_jsonl(path: str, config: SyntheticCorpusConfig, key: str = "text") -> Tuple[int, int]:
    """Write the corpus as JSONL (``{"text": ...}`` per line); temp name, then rename.

    Returns:
        ``(documents, words)`` written.
    """
    from megatron_prealign.platform.files import atomic_open

    docs = words = 0
    with atomic_open(path) as f:
        for doc in generate_documents(config):
            f.write(json.dumps({key: doc}) + "\n")
            docs += 1
            words += doc.count(" ") + 1
    return docs, words
