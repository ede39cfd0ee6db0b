"""Issue 11 (1): the codeswitching unit is the table's word, as NLTK finds it in that text.

A real byte-level BPE is trained in the test on English text with contractions, abbreviations,
hyphens, newlines, tabs, quotes and brackets; the table is built from real word counts
(NLTK) and a real MUSE dictionary file. Every substitution is checked by an independent
text-level checker (tests/codeswitch_checker.py: detokenize, re-run NLTK, compare).
"""

import os
import random
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from codeswitch_checker import check_document, table_translations  # noqa: E402

from megatron_prealign.alignment.boundaries import (  # noqa: E402
    FOLLOW_IF_NOT_DIGIT,
    FOLLOW_IF_SPACE,
    FOLLOW_NO,
    FOLLOW_YES,
    boundaries_from_surfaces,
    token_surfaces,
    word_boundaries,
)
from megatron_prealign.alignment.build import AlignmentBuildConfig, build_alignment_table  # noqa: E402
from megatron_prealign.alignment.dictionaries import read_dictionary  # noqa: E402
from megatron_prealign.alignment.words import count_words, select_words, WordCountConfig  # noqa: E402
from megatron_prealign.data.codeswitch import CodeswitchConfig, Codeswitcher  # noqa: E402
from megatron_prealign.data.codeswitch_reference import reference_codeswitch  # noqa: E402

SENTENCES = [
    "I can't believe the bank is closed.",
    "They won't go to the bank, e.g. on Sunday.",
    "The U.S. bank in Washington, D.C. is open.",
    "J.P. Morgan said the bank is a well-known bank.",
    "\"The bank is old,\" she said.",
    "(The bank is new.) The river bank is green.",
    "John's bank isn't the bank we're using; it's Mary's bank.",
    "Don't go! We cannot go, we're gonna stay home.",
    "If the bank is open, I will go.\nThe house is near the river.",
    "A man and a woman went to the house.\tThe dog stayed home.",
    "The bank's money is in the house: the bank:1 is a code.",
    "She said 'the house is old' and left.",
    "We saw 3 houses and 2 banks at 5:30 in the morning...",
    "The dog--a good dog--stayed in the house [the old house].",
    "Is the bank open? Yes, the bank is open! The dog is happy.",
    "It's the dog's house, and the dogs' houses are old.",
    "The money is $5 and the house is #1; the dog is @home.",
    "Mr. Smith went to the bank. Dr. Brown stayed home.",
    "The good dog, the old man, the green house.",
    "A house; a bank; a river; a dog.",
]

DICTIONARY = """the der
the die
bank Bank
bank Ufer
can kann
won gewann
go gehen
is ist
house Haus
dog Hund
old alt
a ein
i ich
if wenn
man Mann
river Fluss
green grün
well gut
known bekannt
e es
g g
j Joule
p Seite
d d
c Celsius
u du
s s
they sie
we wir
home Heim
money Geld
good gut
open offen
new neu
said sagte
she sie
morning Morgen
john Johann
mary Maria
"""


def make_docs(n, seed):
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        k = rng.randint(2, 6)
        parts = [rng.choice(SENTENCES) for _ in range(k)]
        seps = [rng.choice([" ", " ", "\n", "\n\n", "\t"]) for _ in range(k - 1)]
        doc = parts[0] + "".join(s + p for s, p in zip(seps, parts[1:]))
        docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A trained byte-level BPE, a word-count table from a MUSE dictionary, and documents."""
    from megatron_prealign.tokenizer import build_tokenizer
    from megatron_prealign.tokenizer.train import train_byte_level_bpe

    d = tmp_path_factory.mktemp("bpe")
    train_docs = make_docs(400, 0)
    files = train_byte_level_bpe(train_docs, str(d / "tok"), vocab_size=600, min_frequency=2)
    tok = build_tokenizer("GPT2BPETokenizer", vocab_file=files["vocab_file"], merge_file=files["merge_file"])
    (d / "en-de.txt").write_text(DICTIONARY, encoding="utf-8")
    dictionary = read_dictionary(str(d / "en-de.txt"), "de")
    counts = count_words(train_docs, WordCountConfig(log_interval=0))
    words = select_words(counts, min_count=2)
    table, _ = build_alignment_table(words, {"de": dictionary}, tok, AlignmentBuildConfig(), counts=counts)
    return tok, table, word_boundaries(tok)


def substituted_words(tok, table, boundaries, text, seed=0):
    cs = Codeswitcher(table, tok.word_start_mask(), CodeswitchConfig(ratio=1.0, seed=seed), tok.special_ids, boundaries)
    ids = tok.tokenize(text)
    out, mask = cs.apply(np.asarray(ids, np.int32), 0)
    return check_document(ids, out.tolist(), mask.tolist(), tok.detokenize, table_translations(table)), tok.detokenize(out.tolist())


@pytest.mark.parametrize(
    "text, not_replaced",
    [
        ("I can't go.", "can"),
        ("They won't go.", "won"),
        ("See e.g. the bank.", "e"),
        ("J.P. Morgan is here.", "J"),
        ("The dog in Washington, D.C. now.", "D"),
        ("The U.S. bank.", "U"),
        ("A well-known dog.", "well"),
        ("A well-known dog.", "known"),
    ],
)
def test_part_of_a_whitespace_token_is_never_replaced(world, text, not_replaced):
    tok, table, b = world
    pairs, _ = substituted_words(tok, table, b, text)
    assert not_replaced not in [w for w, _ in pairs]
    assert pairs, "other words of the sentence are still substituted"


@pytest.mark.parametrize(
    "text, word, expect",
    [
        ("The bank is old.", "The", "Der"),  # first word of a document (bare form)
        ("x\nThe dog.", "The", "Der"),  # after a newline
        ("x\tThe dog.", "The", "Der"),  # after a tab
        ('x "The dog."', "The", "Der"),  # after a quote
        ("x (The dog.)", "The", "Der"),  # after a bracket
        ("The dog's house.", "dog", "Hund"),  # a clitic NLTK splits off may follow
        ("Mary's bank.", "bank", None),  # ... and the word before a final period
        ("A dog.", "A", "Ein"),
    ],
)
def test_words_without_a_leading_space_are_reachable(world, text, word, expect):
    tok, table, b = world
    pairs, out = substituted_words(tok, table, b, text)
    got = [t for w, t in pairs if w == word]
    assert got, f"{word!r} not substituted in {text!r}: {out!r}"
    if expect:
        assert expect in got[0] or got[0] == expect
    # no extra space is written at the start of a line or the document
    assert not out.startswith(" ") and "\n " not in out and "( " not in out and '" ' not in out[:4]


def test_every_substitution_is_a_whole_nltk_word_and_reach_is_high(world):
    tok, table, b = world
    from megatron_prealign.alignment.words import words_of

    docs = make_docs(150, 1)
    surface = {e.word for e in table} | {a for e in table for a in e.aliases}
    cs = Codeswitcher(table, tok.word_start_mask(), CodeswitchConfig(ratio=1.0, seed=5), tok.special_ids, b)
    trans = table_translations(table)
    total_pairs = 0
    nltk_occurrences = 0
    for i, text in enumerate(docs):
        ids = tok.tokenize(text)
        out, mask = cs.apply(np.asarray(ids, np.int32), i)
        total_pairs += len(check_document(ids, out.tolist(), mask.tolist(), tok.detokenize, trans))
        nltk_occurrences += sum(w in surface for w in words_of(text))
    assert cs.applied_stats().substituted == total_pairs
    # what the pass reaches vs what NLTK counts: only token-level ambiguities are skipped
    assert total_pairs >= 0.95 * nltk_occurrences, (total_pairs, nltk_occurrences)


def test_without_boundaries_the_checker_catches_partial_words(world):
    # the old behaviour (id-level words only) substitutes "can" in "can't": the checker fails
    tok, table, _ = world
    with pytest.raises(AssertionError, match="not a whole NLTK word"):
        for seed in range(5):
            substituted_words(tok, table, None, "I can't go. They won't go. See e.g. this.", seed)


def test_ratio_over_reachable_words(world):
    tok, table, b = world
    docs = make_docs(600, 2)
    full = Codeswitcher(table, tok.word_start_mask(), CodeswitchConfig(ratio=1.0, seed=9), tok.special_ids, b)
    part = Codeswitcher(table, tok.word_start_mask(), CodeswitchConfig(ratio=0.05, seed=9), tok.special_ids, b)
    trans = table_translations(table)
    subs = 0
    for i, text in enumerate(docs):
        ids = np.asarray(tok.tokenize(text), np.int32)
        full.apply(ids, i)
        out, mask = part.apply(ids, i)
        subs += len(check_document(ids.tolist(), out.tolist(), mask.tolist(), tok.detokenize, trans))
    reachable = full.applied_stats().substituted
    assert reachable > 2000
    assert abs(subs / reachable - 0.05) <= 0.01, (subs, reachable)
    assert abs(part.applied_stats().substitution_ratio - 0.05) <= 0.01


def test_cpp_equals_reference_with_boundaries(world):
    tok, table, b = world
    cfg = CodeswitchConfig(ratio=0.3, seed=4)
    cs = Codeswitcher(table, tok.word_start_mask(), cfg, tok.special_ids, b)
    for i, text in enumerate(make_docs(40, 3)):
        ids = np.asarray(tok.tokenize(text) + [tok.eod], np.int32)
        got = cs.apply(ids, i)
        ref = reference_codeswitch(ids, i, table, tok.word_start_mask(), cfg, tok.special_ids, b)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_boundary_classes_by_hand():
    surfaces = [" the", "\n", "'t", "'s", ".", ",", "-", '"', "(", ")", "The", " '", "n't", ".\"", ":", "5", "x"]
    b = boundaries_from_surfaces(surfaces, special_ids=[16])
    follow = dict(zip(surfaces, b.follow.tolist()))
    opener = dict(zip(surfaces, b.opener.tolist()))
    assert follow[" the"] == FOLLOW_YES and follow["\n"] == FOLLOW_YES and follow[")"] == FOLLOW_YES
    assert follow["'t"] == FOLLOW_NO and follow["n't"] == FOLLOW_NO and follow["-"] == FOLLOW_NO
    assert follow["The"] == FOLLOW_NO and follow["5"] == FOLLOW_NO
    assert follow["'s"] == FOLLOW_IF_SPACE and follow["."] == FOLLOW_IF_SPACE
    assert follow[","] == FOLLOW_IF_NOT_DIGIT and follow[":"] == FOLLOW_IF_NOT_DIGIT
    assert follow['."'] == FOLLOW_YES
    assert opener["\n"] and opener['"'] and opener["("] and opener[" '"] and opener[","]
    assert not opener["."] and not opener["-"] and not opener["'t"] and not opener[" the"]
    assert b.opener[16] == 1 and b.follow[16] == FOLLOW_YES  # a special token


def test_token_surfaces_of_gpt2_style_tokenizer(world):
    tok, _, _ = world
    surfaces = token_surfaces(tok)
    ids = tok.tokenize("The bank\n")
    assert "".join(surfaces[i] for i in ids) == "The bank\n"
