"""Cross-lingual knowledge application (CLKA, paper §4.2, §5.2, appendix A): the generator.

Synthetic facts ``(subject, relation, object)`` about artificial people, with real WikiData
relations (:mod:`.clka_templates`). Artificial names are strings of CV syllables
rendered by a fixed per-syllable transliteration into Latin (en, de), Cyrillic (ru), Arabic (ar)
and Chinese syllable characters (zh), so the same person is recognisable in every script
(``Kalomi Ravetu`` = ``Каломи Равету`` = ``كالومي رافيتو`` = ``卡洛米·拉韦图``). Renderings are
unique per language across all generated entities.

* Knowledge (training side): the English statement of every fact, repeated ``frequency`` times
  (frequency buckets), one document per statement, split into ``num_periods`` injection periods
  (paper Fig. 4: 250-step periods, evaluated after each); see ``tools/make_clka.py``.
* Test sets (per language): the true statement and ``num_distractors`` statements whose object
  is replaced by the objects of the other facts of its *block* (facts come in blocks of
  ``1 + num_distractors`` subjects with one relation and frequency, whose objects are one fixed
  group of distinct entities of the type); option order is shuffled. Every option's object thus
  occurs in the knowledge text exactly as often as the true object: "pick the option whose
  object was seen (most) in training" (``megatron_prealign.eval.clka.familiarity_baseline``)
  is at chance.
* Names: CV syllables by default, or (:class:`NamePieces`, ``tools/make_clka.py --name-pieces
  corpus``) frequent multi-letter BPE pieces of the English corpus, so names tokenize like real
  names (2-4 pieces) instead of letter by letter; transliterated per script
  (:func:`render_latin_word`). No name's English form contains, or is contained in, another
  entity's or the templates' text, so string counts over the knowledge text are exact.

Everything is deterministic for a seed. The scoring is :mod:`megatron_prealign.eval.clka`.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from megatron_prealign.synthetic.clka_templates import CLOSED_ENTITIES, LANGUAGES, RELATIONS, Relation

# ----------------------------------------------------------------------------- transliteration

CONSONANTS = "bdfgkmnprstvz"
VOWELS = "aeiou"
_ZH = {
    "b": "巴贝比博布", "d": "达德迪多杜", "f": "法费菲福富", "g": "加格吉戈古", "k": "卡克基科库",
    "m": "马梅米莫穆", "n": "纳内尼诺努", "p": "帕佩皮波普", "r": "拉雷里罗鲁", "s": "萨塞西索苏",
    "t": "塔泰蒂托图", "v": "瓦韦维沃武", "z": "扎泽齐佐祖",
}
SYLLABLES: Tuple[str, ...] = tuple(c + v for c in CONSONANTS for v in VOWELS)
"""The 65 consonant-vowel syllables names are built from."""


def render_word(syllables: Sequence[str], language: str) -> str:
    """Render one name word (a sequence of CV syllables) in ``language``'s script.

    Raises:
        ValueError: unknown language or syllable.
    """
    for syl in syllables:
        if len(syl) != 2 or syl[0] not in CONSONANTS or syl[1] not in VOWELS:
            raise ValueError(f"not a CV syllable of the inventory: {syl!r}")
    return render_latin_word("".join(syllables), language)


def render_name(words: Sequence[Sequence[str]], language: str) -> str:
    """Render a multi-word name (Chinese joins words with the interpunct ``·``)."""
    parts = [render_word(w, language) for w in words]
    return ("·" if language == "zh" else " ").join(parts)


# ----------------------------------------------------------------------------- data model


@dataclass
class Entity:
    """An entity with its surface form per language."""

    id: str
    """Stable id, e.g. ``person:17`` or ``country:3``."""
    type: str
    """Entity type (``man``, ``woman``, ``city``, ``country``, ...)."""
    forms: Dict[str, str]
    """Surface form per language."""


@dataclass
class Fact:
    """One synthetic knowledge triplet and its distractor objects."""

    id: int
    """Index of the fact."""
    pid: str
    """WikiData property id of the relation."""
    subject: Entity
    """The (artificial) person the fact is about."""
    object: Entity
    """The true object."""
    distractors: List[Entity]
    """Other entities of the object's type (never the true object)."""
    frequency: int
    """How many times the English statement occurs in the knowledge data."""
    period: int
    """Injection period (0-based)."""


@dataclass
class CLKAConfig:
    """What :func:`generate_facts` builds."""

    seed: int = 1234
    """Seed of every random choice (the output is a function of the config)."""
    facts_per_period: int = 1000
    """Facts injected in each period."""
    num_periods: int = 1
    """Injection periods (paper Fig. 4: one per 250 training steps)."""
    frequencies: Tuple[int, ...] = (1, 2, 5, 10)
    """Frequency buckets: each fact's statement is repeated this many times; facts are spread
    evenly over the buckets."""
    num_distractors: int = 3
    """Distractor statements per test item (paper: 3, so chance is 25%)."""
    object_pool_size: int = 200
    """Generated entities per open object type (cities, companies, object people, ...)."""
    relations: Optional[Tuple[str, ...]] = None
    """WikiData ids to use (default: all 24)."""
    name_pieces: Optional["NamePieces"] = None
    """Build names from these subword pieces (e.g. frequent BPE pieces of the English corpus,
    see :func:`frequent_name_pieces`) instead of CV syllables."""
    capitalize_names: bool = True
    """Capitalise names built from ``name_pieces`` (syllable names are always capitalised). A
    small BPE vocabulary rarely has capitalised pieces, so a capitalised name splits its first
    letter off as a single character."""


_BY_PID: Dict[str, Relation] = {r.pid: r for r in RELATIONS}


_LAT_RU = dict(zip("abcdefghijklmnopqrstuvwxyz", ["а", "б", "к", "д", "е", "ф", "г", "х", "и", "й", "к", "л", "м", "н", "о",
                                                 "п", "к", "р", "с", "т", "у", "в", "в", "кс", "ы", "з"]))
_LAT_AR = dict(zip("abcdefghijklmnopqrstuvwxyz", ["ا", "ب", "ك", "د", "ي", "ف", "غ", "ه", "ي", "ج", "ك", "ل", "م", "ن", "و",
                                                 "ب", "ق", "ر", "س", "ت", "و", "ف", "و", "كس", "ي", "ز"]))
# Consonants outside the CV inventory borrow the Chinese row of a similar-sounding one.
_ZH_NEAR = {"c": "k", "h": "g", "j": "z", "l": "r", "q": "k", "w": "v", "x": "s", "y": "z"}
_ZH_VOWEL_ONLY = "阿埃伊奥乌"


def render_latin_word(word: str, language: str, capitalize: bool = True) -> str:
    """Render one lowercase Latin name word (any letters, e.g. joined BPE pieces) in ``language``.

    Russian and Arabic transliterate letter by letter; Chinese maps each ``C*V+`` chunk to the
    syllable character of its first consonant and vowel (a trailing consonant takes the ``u``
    row); a CV syllable is one such chunk (:func:`render_word`).

    Raises:
        ValueError: not lowercase ``a-z``, or an unknown language.
    """
    if not word or not re.fullmatch(r"[a-z]+", word):
        raise ValueError(f"name word must be lowercase a-z, got {word!r}")
    if language in ("en", "de"):
        return word.capitalize() if capitalize else word
    if language == "ru":
        text = "".join(_LAT_RU[c] for c in word)
        return text[:1].upper() + text[1:] if capitalize else text
    if language == "ar":
        return "".join(_LAT_AR[c] for c in word)
    if language == "zh":
        out = []
        for chunk in re.findall(r"[^aeiou]*[aeiou]+|[^aeiou]+$", word):
            v = VOWELS.index(next((c for c in chunk if c in VOWELS), "u"))
            cons = chunk[0]
            out.append(_ZH_VOWEL_ONLY[v] if cons in VOWELS else _ZH[_ZH_NEAR.get(cons, cons)][v])
        return "".join(out)
    raise ValueError(f"no name rendering for language {language!r} (have: {', '.join(LANGUAGES)})")


@dataclass(frozen=True)
class NamePieces:
    """Subword pieces names are built from (lowercase ``a-z``, at least 2 letters each)."""

    initial: Tuple[str, ...]
    """Word-initial pieces (a BPE token that starts a word, without its space marker)."""
    continuation: Tuple[str, ...]
    """Word-internal pieces (a BPE token that continues a word)."""


def frequent_name_pieces(
    token_strings: Callable[[int], str],
    counts: Dict[int, int],
    top_k: int = 200,
    min_chars: int = 2,
) -> NamePieces:
    """The ``top_k`` most frequent word-initial and word-internal pieces usable in names.

    Args:
        token_strings: token id -> its text (a word-initial token starts with a space).
        counts: occurrences of each token id in the English corpus (or, without a corpus, any
            monotone proxy such as ``-id`` for a BPE vocabulary whose ids follow merge order).
        top_k: pieces kept of each kind.
        min_chars: shortest piece (letters), so names are not spelled character by character.

    Raises:
        ValueError: fewer than 4 pieces of a kind qualify.
    """
    initial, cont = [], []
    for tid in sorted(counts, key=lambda t: (-counts[t], t)):
        text = token_strings(tid)
        body = text[1:] if text.startswith(" ") else text
        if len(body) < min_chars or not re.fullmatch(r"[a-z]+", body):
            continue
        (initial if text.startswith(" ") else cont).append(body)
    initial, cont = initial[:top_k], cont[:top_k]
    if len(initial) < 4 or len(cont) < 4:
        raise ValueError(f"too few name pieces of >= {min_chars} lowercase letters (word-initial {len(initial)}, "
                         f"word-internal {len(cont)}); give a larger corpus or vocabulary")
    return NamePieces(tuple(initial), tuple(cont))


class _NameFactory:
    """Draws artificial names whose renderings are unique in every language.

    The English rendering of a new name is also never a substring of, nor contains, the English
    form of an earlier name or of a ``reserved`` string (closed-class entities, template text), so
    counting an object's string in the knowledge text counts exactly that object's statements.
    """

    def __init__(self, rng: random.Random, pieces: Optional[NamePieces] = None, capitalize: bool = True,
                 reserved: Sequence[str] = (), accept: Optional[Callable[[str], bool]] = None) -> None:
        self.rng = rng
        self.pieces = pieces
        self.capitalize = capitalize
        self.accept = accept
        self.used: Dict[str, set] = {lang: set() for lang in LANGUAGES}
        self.reserved_blob = "\n".join(reserved)
        self.en_blob_parts: List[str] = []
        self.substrings: set = set(reserved)

    def _clash(self, en: str) -> bool:
        if en in self.reserved_blob or any(en in other for other in self.en_blob_parts):
            return True
        n = len(en)
        return any(en[i:j] in self.substrings for i in range(n) for j in range(i + 1, n + 1))

    def _word(self, min_syl: int, max_syl: int, words: int) -> Callable[[str], str]:
        if self.pieces is None:
            sylls = [self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(min_syl, max_syl))]
            return lambda lang: render_word(sylls, lang)
        # Every word is an initial piece plus >= 1 continuation, so no word is a real corpus word:
        # two-word names (people) 2 + 2 pieces, one-word names 2-3 pieces.
        n_cont = 1 if words > 1 else self.rng.randint(1, 2)
        word = self.rng.choice(self.pieces.initial) + "".join(self.rng.choice(self.pieces.continuation) for _ in range(n_cont))
        return lambda lang: render_latin_word(word, lang, self.capitalize)

    def draw(self, words: int, min_syl: int, max_syl: int) -> Dict[str, str]:
        for _ in range(10000):
            parts = [self._word(min_syl, max_syl, words) for _ in range(words)]
            forms = {lang: ("·" if lang == "zh" else " ").join(r(lang) for r in parts) for lang in LANGUAGES}
            if any(forms[lang] in self.used[lang] for lang in LANGUAGES) or self._clash(forms["en"]):
                continue
            if self.accept is not None and not self.accept(forms["en"]):
                continue
            for lang in LANGUAGES:
                self.used[lang].add(forms[lang])
            self.en_blob_parts.append(forms["en"])
            self.substrings.add(forms["en"])
            return forms
        raise RuntimeError("could not draw a unique, accepted name in 10000 tries: the name space is exhausted or the "
                           "name filter rejects every draw (more name pieces, fewer facts, or --name-case lower)")


def _open_pool(kind: str, size: int, names: _NameFactory) -> List[Entity]:
    # (name words, min syllables, max syllables): university, company, society, prize: one word
    shape = (2, 2, 3) if kind in ("man", "woman") else (1, 3, 3) if kind == "city" else (1, 2, 3)
    return [Entity(id=f"{kind}:{i}", type=kind, forms=names.draw(*shape)) for i in range(size)]


def _template_text() -> List[str]:
    """The literal English text of every template (slots removed)."""
    return [frag for r in RELATIONS for frag in re.split(r"\{[so]\}", r.templates["en"]) if frag.strip()]


def _closed_pool(kind: str) -> List[Entity]:
    """Closed-class entities whose English form occurs nowhere else (``tennis`` is inside ``table
    tennis``: dropped), so a string count over the knowledge text counts only its own facts."""
    others = [r2["en"] for rs in CLOSED_ENTITIES.values() for r2 in rs] + _template_text()
    # found once in ``others``: in itself only, not in another entity or a template
    return [Entity(id=f"{kind}:{i}", type=kind, forms=dict(r))
            for i, r in enumerate(CLOSED_ENTITIES[kind]) if sum(r["en"] in o for o in others) == 1]


def generate_facts(config: CLKAConfig, accept_name: Optional[Callable[[str], bool]] = None) -> List[Fact]:
    """Generate ``facts_per_period * num_periods`` facts (deterministic for ``config``).

    Facts come in *blocks* of ``1 + num_distractors`` subjects (fresh artificial people) with
    the same relation, frequency and period. Each object type's entities are partitioned once
    into fixed groups of ``1 + num_distractors``; a block takes one whole group and gives each
    subject one of its objects, and a fact's distractors are the objects of the other facts of
    its block. Every member of a group is thus the object of exactly as many statements as every
    other, so all options of an item occur equally often in the knowledge text (picking the
    most familiar object is at chance). ``person`` objects use the ``man`` and ``woman`` groups.

    Args:
        config: what to build.
        accept_name: optional filter on a drawn name's English form (e.g. "tokenizes into 2-4
            multi-letter pieces"); rejected names are redrawn.

    Raises:
        ValueError: unknown relation ids, bad frequencies, ``facts_per_period`` not a multiple
            of the block size, or fewer than one group of entities for a relation's object type.
    """
    rng = random.Random(config.seed)
    pids = list(config.relations) if config.relations else [r.pid for r in RELATIONS]
    unknown = [p for p in pids if p not in _BY_PID]
    if unknown:
        raise ValueError(f"unknown CLKA relation id(s) {', '.join(unknown)} (have: {', '.join(_BY_PID)})")
    if not config.frequencies or any(f < 1 for f in config.frequencies):
        raise ValueError(f"frequencies must be positive integers, got {config.frequencies}")
    block = 1 + config.num_distractors
    if config.num_distractors < 1 or config.facts_per_period % block:
        raise ValueError(f"facts_per_period ({config.facts_per_period}) must be a multiple of 1 + num_distractors ({block})")
    closed = {kind: _closed_pool(kind) for kind in CLOSED_ENTITIES}
    reserved = [e.forms["en"] for es in closed.values() for e in es] + _template_text()
    names = _NameFactory(rng, config.name_pieces, config.capitalize_names, reserved, accept_name)
    pools = {kind: _open_pool(kind, config.object_pool_size, names)
             for kind in ("man", "woman", "city", "university", "company", "society", "prize")}
    pools.update(closed)
    groups: Dict[str, List[List[Entity]]] = {}
    for kind, pool in pools.items():
        order = list(pool)
        rng.shuffle(order)
        groups[kind] = [order[i:i + block] for i in range(0, len(order) - block + 1, block)]
    groups["person"] = groups["man"] + groups["woman"]
    for pid in pids:
        kind = _BY_PID[pid].object_type
        if not groups[kind]:
            raise ValueError(f"relation {pid}: only {len(pools.get(kind, []))} usable {kind} entities for "
                             f"{config.num_distractors} distractors")
    facts: List[Fact] = []
    fid = 0
    for period in range(config.num_periods):
        for b in range(config.facts_per_period // block):
            pid = pids[rng.randrange(len(pids))]
            group = list(rng.choice(groups[_BY_PID[pid].object_type]))
            rng.shuffle(group)
            freq = config.frequencies[b % len(config.frequencies)]
            for j, obj in enumerate(group):
                subject = Entity(id=f"subject:{fid}", type="person", forms=names.draw(2, 2, 3))
                facts.append(Fact(fid, pid, subject, obj, group[:j] + group[j + 1:], freq, period))
                fid += 1
    return facts


def check_languages(languages: Iterable[str]) -> List[str]:
    """Validate target languages (``en_clone`` allowed: English cloned in token space).

    Raises:
        ValueError: a language without templates (one line, naming it).
    """
    out = []
    for lang in languages:
        lang = "en_clone" if lang == "en-clone" else lang
        if lang != "en_clone" and lang not in LANGUAGES:
            raise ValueError(f"no CLKA templates for language {lang!r} (have: {', '.join(LANGUAGES)}, en_clone)")
        out.append(lang)
    return out


def _template_language(language: str) -> str:
    """The language whose templates and name forms ``language`` uses (En-Clone: English)."""
    return "en" if language in ("en_clone", "en-clone") else language


def statement(fact_pid: str, subject: Entity, obj: Entity, language: str) -> str:
    """The statement of ``(subject, relation, obj)`` in ``language`` (``en_clone`` uses English)."""
    lang = _template_language(language)
    rel = _BY_PID[fact_pid]
    if lang not in rel.templates:
        raise ValueError(f"relation {fact_pid} has no template for language {language!r}")
    return rel.templates[lang].format(s=subject.forms[lang], o=obj.forms[lang])


def knowledge_statements(facts: Sequence[Fact], period: Optional[int] = None, language: str = "en", seed: int = 0) -> List[str]:
    """The knowledge corpus: each fact's statement ``frequency`` times, shuffled (deterministic)."""
    docs = []
    for f in facts:
        if period is not None and f.period != period:
            continue
        docs.extend([statement(f.pid, f.subject, f.object, language)] * f.frequency)
    random.Random(seed * 1000003 + (period or 0)).shuffle(docs)
    return docs


def build_test_items(facts: Sequence[Fact], language: str, seed: int = 0) -> List[dict]:
    """One test item per fact in ``language``: options (true + distractors, shuffled) and answer index."""
    check_languages([language])
    lang = _template_language(language)
    rng = random.Random(seed * 7919 + sum(map(ord, language)))
    items = []
    for f in facts:
        objs = [f.object] + list(f.distractors)
        order = list(range(len(objs)))
        rng.shuffle(order)
        options = [statement(f.pid, f.subject, objs[i], language) for i in order]
        items.append({
            "id": f"{language}-{f.id}",
            "fact_id": f.id,
            "language": language,
            "pid": f.pid,
            "relation": _BY_PID[f.pid].label,
            "subject": f.subject.forms[lang],
            "period": f.period,
            "frequency": f.frequency,
            "options": options,
            "answer": order.index(0),
            "objects": [objs[i].forms[lang] for i in order],
            "objects_en": [objs[i].forms["en"] for i in order],
        })
    return items


def fact_record(f: Fact) -> dict:
    """JSON form of a fact (``facts.jsonl``)."""
    return {
        "id": f.id, "pid": f.pid, "period": f.period, "frequency": f.frequency,
        "subject": asdict(f.subject), "object": asdict(f.object),
        "distractors": [asdict(d) for d in f.distractors],
    }


def object_counts(facts: Sequence[Fact], text: str) -> List[Tuple[int, List[int]]]:
    """Per fact: occurrences in ``text`` of the true object's and each distractor's English form."""
    return [(text.count(f.object.forms["en"]), [text.count(d.forms["en"]) for d in f.distractors]) for f in facts]


def name_token_stats(
    entities: Iterable[Entity], encode: Callable[[str], List[int]], pieces: Optional[set] = None,
) -> Dict[str, float]:
    """How names tokenize: mean/min/max tokens per name (English form after a space, as in a
    statement), share of single-character tokens, and (``pieces``: token ids counted as corpus
    pieces / table words) the share of name tokens among them.

    The tokens of an item's object names are exactly the tokens that distinguish its options.
    """
    lens, single, in_pieces = [], 0, 0
    single_ids = _single_char_ids(encode)
    for e in entities:
        ids = encode(" " + e.forms["en"])
        lens.append(len(ids))
        if pieces is not None:
            in_pieces += sum(i in pieces for i in ids)
        single += sum(1 for i in ids if i in single_ids)
    total = sum(lens)
    out = {"names": len(lens), "mean_tokens_per_name": sum(lens) / len(lens) if lens else float("nan"),
           "min_tokens_per_name": min(lens, default=0), "max_tokens_per_name": max(lens, default=0),
           "single_char_token_share": 100.0 * single / total if total else float("nan")}
    if pieces is not None:
        out["corpus_piece_token_share"] = 100.0 * in_pieces / total if total else float("nan")
    return out


def _single_char_ids(encode: Callable[[str], List[int]]) -> set:
    """Ids of the tokens of single letters (with and without a leading space)."""
    ids = set()
    for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        for text in (c, " " + c):
            tok = encode(text)
            if len(tok) == 1:
                ids.add(tok[0])
    return ids


# ----------------------------------------------------------------------------- binarized knowledge


def write_token_documents(prefix: str, documents: Iterable[Sequence[int]], vocab_size: int) -> Tuple[int, int]:
    """Write token documents as a Megatron ``.bin/.idx`` pair (temporary names, then renamed).

    Args:
        prefix: output path prefix (``{prefix}.bin`` / ``{prefix}.idx``).
        documents: token ids per document (EOD already appended by the caller).
        vocab_size: decides the token dtype as Megatron does (uint16 below 65500, else int32).

    Returns:
        ``(num_documents, num_tokens)``.
    """
    from megatron.core.datasets.indexed_dataset import DType

    from megatron_prealign.data.indexed import write_documents

    return write_documents(prefix, documents, DType.optimal_dtype(vocab_size))
