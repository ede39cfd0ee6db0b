"""Cross-lingual knowledge application (CLKA, paper §4.2, §5.2, appendix A): the scoring.

The test sets and knowledge come from :mod:`megatron_prealign.synthetic.clka`
(``tools/make_clka.py``). Evaluation ranks the options by the model's log-likelihood of the
whole statement (sum of token log-probs after an EOD context; the primary metric is *not*
length-normalised, the per-token mean is reported alongside). Ties share the credit (1/k for a
k-way tie at the top). The familiarity baseline (pick the option whose object occurs most
often in the training text) checks that the test sets are not solvable by counting.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence

from megatron_prealign.synthetic.clka import Entity, statement


def read_test_items(path: str) -> List[dict]:
    """Read a CLKA test JSONL (one-line errors naming ``file:line``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    items = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            opts = row.get("options")
            ans = row.get("answer")
            if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(o, str) and o for o in opts):
                raise ValueError(f"{path}:{lineno}: 'options' must be a list of >= 2 non-empty strings")
            if not isinstance(ans, int) or not 0 <= ans < len(opts):
                raise ValueError(f"{path}:{lineno}: 'answer' must index into 'options'")
            items.append(row)
    return items


# ----------------------------------------------------------------------------- evaluation

ScoreFn = Callable[[List[List[int]], List[List[int]]], List["object"]]
"""``score_fn(contexts, continuations) -> [SequenceScore]`` (see :func:`.scoring.score_sequences`)."""


@dataclass
class CLKAResult:
    """Accuracy of one language's test set."""

    language: str
    """Test language (``en_clone`` = English statements cloned in token space)."""
    items: int
    """Items scored."""
    accuracy: float
    """Share ranked correctly by the summed statement log-likelihood (ties share credit)."""
    accuracy_length_normalized: float
    """Same with per-token mean log-likelihood."""
    by_relation: Dict[str, float] = field(default_factory=dict)
    """Accuracy per WikiData property id."""
    by_frequency: Dict[str, float] = field(default_factory=dict)
    """Accuracy per frequency bucket."""
    by_period: Dict[str, float] = field(default_factory=dict)
    """Accuracy per injection period."""
    chance: float = float("nan")
    """Expected accuracy of a uniform guess (mean of ``100 / len(options)``)."""
    stderr: float = float("nan")
    """Binomial standard error of ``accuracy``: ``sqrt(p (1 - p) / items)`` (percentage points)."""


def _credit(scores: Sequence[float], answer: int, tol: float = 1e-6) -> float:
    best = max(scores)
    top = [i for i, s in enumerate(scores) if s >= best - tol]
    return 1.0 / len(top) if answer in top else 0.0


def evaluate_items(
    items: Sequence[dict],
    encode: Callable[[str], List[int]],
    score_fn: ScoreFn,
    context: Sequence[int],
    language: str,
) -> CLKAResult:
    """Rank each item's options by likelihood and aggregate accuracies.

    Args:
        items: test items (``options``, ``answer``, optional ``pid``/``frequency``/``period``).
        encode: text -> token ids (cloned ids for En-Clone).
        score_fn: batched scorer ``(contexts, continuations) -> [SequenceScore]``.
        context: tokens every statement is conditioned on (e.g. ``[eod]``).
        language: recorded in the result.
    """
    contexts, conts, owners = [], [], []
    for n, item in enumerate(items):
        for opt in item["options"]:
            ids = encode(opt)
            if not ids:
                raise ValueError(f"item {item.get('id', n)}: option {opt!r} encodes to no tokens")
            contexts.append(list(context))
            conts.append(ids)
            owners.append(n)
    scores = score_fn(contexts, conts)
    per_item: Dict[int, list] = defaultdict(list)
    for owner, sc in zip(owners, scores):
        per_item[owner].append(sc)
    acc, acc_norm = [], []
    groups: Dict[str, Dict[str, list]] = {"pid": defaultdict(list), "frequency": defaultdict(list), "period": defaultdict(list)}
    for n, item in enumerate(items):
        scs = per_item[n]
        c = _credit([s.logprob for s in scs], item["answer"])
        acc.append(c)
        acc_norm.append(_credit([s.mean_logprob for s in scs], item["answer"]))
        for key in groups:
            if key in item:
                groups[key][str(item[key])].append(c)
    mean = lambda xs: 100.0 * sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return CLKAResult(
        chance=chance_level(items),
        stderr=binomial_stderr(mean(acc), len(items)),
        language=language,
        items=len(items),
        accuracy=mean(acc),
        accuracy_length_normalized=mean(acc_norm),
        by_relation={k: mean(v) for k, v in sorted(groups["pid"].items())},
        by_frequency={k: mean(v) for k, v in sorted(groups["frequency"].items(), key=lambda kv: int(kv[0]))},
        by_period={k: mean(v) for k, v in sorted(groups["period"].items(), key=lambda kv: int(kv[0]))},
    )


def chance_level(items: Sequence[dict]) -> float:
    """Accuracy (%) of a uniform random guess over each item's options."""
    return 100.0 * sum(1.0 / len(it["options"]) for it in items) / len(items) if items else float("nan")


def binomial_stderr(accuracy: float, n: int) -> float:
    """Binomial standard error (percentage points) of an accuracy in % over ``n`` items."""
    if n <= 0 or accuracy != accuracy:
        return float("nan")
    p = accuracy / 100.0
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / n)


def read_familiarity_text(paths: Sequence[str]) -> str:
    """The training text the familiarity baseline counts in: plain text, or the ``text`` field
    of every line of a ``.jsonl`` file (lines joined with newlines).

    Raises:
        FileNotFoundError / ValueError: a missing file, or a JSONL line without a ``text`` string
            (one line naming ``file:line``).
    """
    parts = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--familiarity-text {path}: no such file")
        with open(path, encoding="utf-8") as fh:
            if not path.endswith((".jsonl", ".json")):
                parts.append(fh.read())
                continue
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line).get("text")
                except (json.JSONDecodeError, AttributeError):
                    text = None
                if not isinstance(text, str):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object with a 'text' string")
                parts.append(text)
    return "\n".join(parts)


@dataclass
class FamiliarityResult:
    """The familiarity baseline of one test set: pick the option whose object occurs most often
    in a training text (a k-way tie at the top earns 1/k)."""

    language: str
    """Test language."""
    items: int
    """Items scored."""
    accuracy: float
    """Accuracy (%) of the familiarity pick."""
    chance: float
    """Uniform-guess accuracy (%)."""
    stderr: float
    """Binomial standard error of ``accuracy``."""
    objects_seen: float
    """Share (%) of all options whose object occurs at least once in the text."""


def familiarity_baseline(items: Sequence[dict], text: str, language: str) -> FamiliarityResult:
    """Score the "most familiar object" heuristic on ``items`` against a training ``text``.

    Objects are counted in their English form (``objects_en``; the knowledge text is English),
    falling back to ``objects``.

    Raises:
        ValueError: an item without object strings (written by an older ``make_clka.py``).
    """
    credit, seen, total = [], 0, 0
    for n, item in enumerate(items):
        objs = item.get("objects_en") or item.get("objects")
        if not objs or len(objs) != len(item["options"]):
            raise ValueError(f"item {item.get('id', n)}: no 'objects_en' list per option (regenerate with tools/make_clka.py)")
        counts = [float(text.count(o)) for o in objs]
        credit.append(_credit(counts, item["answer"]))
        seen += sum(c > 0 for c in counts)
        total += len(counts)
    acc = 100.0 * sum(credit) / len(credit) if credit else float("nan")
    return FamiliarityResult(language, len(items), acc, chance_level(items), binomial_stderr(acc, len(items)),
                             100.0 * seen / total if total else float("nan"))


def attach_objects(items: List[dict], facts_path: str) -> List[dict]:
    """Add ``objects``/``objects_en`` to items of an older test set from its ``facts.jsonl``
    (each option is matched to the fact's object or distractor whose statement it is).

    Raises:
        ValueError: a missing fact or an option that is no candidate's statement (one line).
    """
    if not os.path.isfile(facts_path):
        raise FileNotFoundError(f"{facts_path}: no such file (test items carry no objects)")
    with open(facts_path, encoding="utf-8") as fh:
        facts = {row["id"]: row for row in (json.loads(line) for line in fh if line.strip())}
    out = []
    for item in items:
        if item.get("objects_en"):
            out.append(item)
            continue
        row = facts.get(item.get("fact_id"))
        if row is None:
            raise ValueError(f"{facts_path}: no fact {item.get('fact_id')!r} for item {item.get('id')!r}")
        lang = "en" if item.get("language") in ("en_clone", "en-clone", None) else item["language"]
        subject = Entity(**row["subject"])
        cands = [Entity(**e) for e in [row["object"]] + row["distractors"]]
        by_text = {statement(row["pid"], subject, c, lang): c for c in cands}
        try:
            objs = [by_text[o] for o in item["options"]]
        except KeyError:
            raise ValueError(f"{facts_path}: item {item.get('id')!r} has an option that is no statement of its fact") from None
        out.append(dict(item, objects=[c.forms[lang] for c in objs], objects_en=[c.forms["en"] for c in objs]))
    return out
