"""Generate the CLKA benchmark: synthetic English knowledge to blend into pretraining + test sets.

Paper §4.2 / §5.2 / appendix A. Writes, into ``--output-dir`` (built under a temporary name and
renamed when complete):

* ``knowledge.jsonl`` — the English knowledge statements as text (``{"text", "period"}`` per
  line): the text the familiarity baseline of ``tools/eval_clka.py --familiarity-text`` counts in.
* ``facts.jsonl`` — every fact (subject, WikiData relation, object, distractors, frequency, period).
* ``test/{lang}.jsonl`` — per language (en, de, zh, ru, ar): one item per fact with 4 statements
  (true + 3 distractors, shuffled), the answer index and each option's object (``objects``,
  ``objects_en``). Distractors are the objects of the 3 other facts of the item's block (same
  relation and frequency), so every option's object occurs in the knowledge text equally often. En-Clone tests use ``test/en.jsonl``
  cloned in token space by ``tools/eval_clka.py``.
* ``knowledge/period_{p:03d}_text_document.{bin,idx}`` — the knowledge statements of period
  ``p`` (each fact repeated ``frequency`` times, one document per statement + EOD), tokenized
  with the tokenizer flags, in English or (``--knowledge-language en_clone``) En-Clone ids.
* ``schedule.json`` — period -> iteration range and data prefix (periods of
  ``--steps-per-period`` steps from ``--start-iteration``): blend period p's dataset during its
  range and evaluate CLKA of period p on the checkpoint saved at its end (paper Fig. 4).
* ``manifest.json`` — the configuration, tokenizer and counts.

Names: ``--name-pieces corpus --name-corpus en.jsonl`` builds names from the most frequent
multi-letter BPE pieces of the English corpus (each name 2-4 tokens, none a single letter);
the tool prints tokens per name and the familiarity baseline (chance by construction).

Examples::

    python tools/make_clka.py --output-dir data/clka --tokenizer-type GPT2BPETokenizer \\
        --vocab-file gpt2/vocab.json --merge-file gpt2/merges.txt --facts-per-period 1000

    # Fig. 4 dynamics: 8 periods of 250 steps from iteration 2000, knowledge in En-Clone
    python tools/make_clka.py --output-dir data/clka_periods --num-periods 8 --steps-per-period 250 \\
        --start-iteration 2000 --frequencies 1,2,5,10 --knowledge-language en_clone \\
        --tokenizer-type GPT2BPETokenizer --vocab-file gpt2/vocab.json --merge-file gpt2/merges.txt --en-clone
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import List

from megatron_prealign.cli.tool import tool_main


def parse_args(argv=None):
    from megatron_prealign.cli.tokenizer import add_tokenizer_args

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", required=True, help="Folder to create (must not exist unless --overwrite).")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing --output-dir.")
    p.add_argument("--seed", type=int, default=1234, help="Seed of every random choice.")
    p.add_argument("--facts-per-period", type=int, default=1000, help="Facts injected per period.")
    p.add_argument("--num-periods", type=int, default=1, help="Injection periods (Fig. 4).")
    p.add_argument("--steps-per-period", type=int, default=250, help="Training steps per period (schedule.json).")
    p.add_argument("--start-iteration", type=int, default=0, help="Iteration at which period 0 starts (schedule.json).")
    p.add_argument("--frequencies", default="1,2,5,10", help="Comma-separated repetition buckets.")
    p.add_argument("--num-distractors", type=int, default=3, help="Distractors per test item (chance = 1/(1+n)).")
    p.add_argument("--object-pool-size", type=int, default=200, help="Artificial entities per open object type.")
    p.add_argument("--relations", default=None, help="Comma-separated WikiData ids (default: all 24).")
    p.add_argument("--languages", default="en,de,zh,ru,ar", help="Test-set languages.")
    p.add_argument("--knowledge-language", default="en", choices=["en", "en_clone"],
                   help="Language of the knowledge statements (en_clone needs --en-clone).")
    p.add_argument("--name-pieces", default="syllables", choices=["syllables", "corpus", "vocab"],
                   help="What names are built from: CV syllables (default); the most frequent multi-letter BPE pieces "
                        "of --name-corpus tokenized with the tokenizer flags ('corpus'); or of the tokenizer vocabulary "
                        "in merge order ('vocab'). With corpus/vocab every name must tokenize (after a space, as in a "
                        "statement) into 2-4 pieces of >= 2 letters.")
    p.add_argument("--name-corpus", nargs="+", default=None,
                   help="English training text (JSONL 'text' fields or plain text) for --name-pieces corpus.")
    p.add_argument("--name-top-k", type=int, default=200, help="Frequent pieces kept of each kind (word-initial, internal).")
    p.add_argument("--name-case", default="lower", choices=["lower", "capitalize"],
                   help="Case of corpus/vocab-piece names (a small BPE rarely has capitalised pieces, so capitalised "
                        "names split off a single letter and are rejected).")
    add_tokenizer_args(p)
    return p, p.parse_args(argv)


def _name_pieces(args, parser, tokenizer):
    """(NamePieces, set of piece token ids) for --name-pieces corpus/vocab."""
    from collections import Counter

    from megatron_prealign.synthetic import clka

    base = getattr(tokenizer, "base", tokenizer)
    if args.name_pieces == "corpus":
        if not args.name_corpus:
            parser.error("--name-pieces corpus needs --name-corpus")
        from megatron_prealign.data.readers import iter_documents

        counts = Counter()
        try:
            for doc in iter_documents(args.name_corpus):
                counts.update(base.tokenize(doc))
        except (OSError, ValueError) as exc:
            parser.error(f"--name-corpus: {exc}")
    else:
        counts = {i: -i for i in range(base.vocab_size) if i not in set(base.special_ids)}
    try:
        pieces = clka.frequent_name_pieces(lambda i: base.detokenize([i]), dict(counts), top_k=args.name_top_k)
    except ValueError as exc:
        parser.error(f"--name-pieces {args.name_pieces}: {exc}")
    piece_ids = set()
    for body in pieces.initial:
        piece_ids.update(base.tokenize(" " + body))
    for body in pieces.continuation:
        ids = base.tokenize(body)
        if len(ids) == 1:
            piece_ids.update(ids)
    return pieces, piece_ids


@tool_main("make_clka.py")
def main(argv: List[str]) -> int:
    parser, args = parse_args(argv)
    from megatron_prealign.synthetic import clka
    from megatron_prealign.eval.clka import familiarity_baseline
    from megatron_prealign.platform.files import atomic_path, write_json_atomic as write_json
    from megatron_prealign.cli.tokenizer import build_tokenizer_from_args

    try:
        frequencies = tuple(int(x) for x in args.frequencies.split(","))
        languages = clka.check_languages([x.strip() for x in args.languages.split(",") if x.strip()])
    except ValueError as exc:
        parser.error(str(exc) if "CLKA" in str(exc) else f"--frequencies: expected comma-separated integers ({exc})")
    if "en_clone" in languages or "en-clone" in languages:
        parser.error("--languages: En-Clone tests are test/en.jsonl cloned by tools/eval_clka.py; list real languages only")
    tokenizer = build_tokenizer_from_args(args, parser)
    if args.knowledge_language == "en_clone" and not hasattr(tokenizer, "tokenize_clone"):
        parser.error("--knowledge-language en_clone needs --en-clone")
    if os.path.exists(args.output_dir) and not args.overwrite:
        parser.error(f"--output-dir {args.output_dir} exists (use --overwrite)")
    pieces, piece_ids, accept = None, None, None
    if args.name_pieces != "syllables":
        pieces, piece_ids = _name_pieces(args, parser, tokenizer)
        single = clka._single_char_ids(tokenizer.tokenize)

        def accept(name: str) -> bool:
            # 2-4 tokens after a space (as in a statement), none a single letter, and no word a
            # single token (a real corpus word)
            ids = tokenizer.tokenize(" " + name)
            return (2 <= len(ids) <= 4 and not any(i in single for i in ids)
                    and all(len(tokenizer.tokenize(" " + w)) >= 2 for w in name.split(" ")))

    cfg = clka.CLKAConfig(
        seed=args.seed, facts_per_period=args.facts_per_period, num_periods=args.num_periods, frequencies=frequencies,
        num_distractors=args.num_distractors, object_pool_size=args.object_pool_size,
        relations=tuple(args.relations.split(",")) if args.relations else None,
        name_pieces=pieces, capitalize_names=(args.name_case == "capitalize"),
    )
    try:
        facts = clka.generate_facts(cfg, accept_name=accept)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc))
    all_docs = clka.knowledge_statements(facts, language="en", seed=args.seed)
    text = "\n".join(all_docs)
    unequal = sum(1 for t, ds in clka.object_counts(facts, text) if any(d != t for d in ds))
    if unequal:  # the generator guarantees equal counts; a failure here is a bug, not bad input
        raise RuntimeError(f"{unequal} facts have distractors occurring unlike their true object in the knowledge text")
    objects = {f.object.id: f.object for f in facts}
    artificial = [e for e in objects.values() if e.id.split(":")[0] not in clka.CLOSED_ENTITIES]
    stats = {
        # every artificial name (subjects and artificial objects)
        "names": clka.name_token_stats(artificial + [f.subject for f in facts], tokenizer.tokenize, piece_ids),
        # the objects the options differ in (artificial and closed-class, e.g. countries)
        "option_objects": clka.name_token_stats(list(objects.values()), tokenizer.tokenize, piece_ids),
        "familiarity_en": familiarity_baseline(clka.build_test_items(facts, "en", seed=args.seed), text, "en").__dict__,
    }
    n, o = stats["names"], stats["option_objects"]
    print(f"names ({args.name_pieces}): {n['mean_tokens_per_name']:.2f} tokens per name (min {n['min_tokens_per_name']}, "
          f"max {n['max_tokens_per_name']}), single-letter tokens {n['single_char_token_share']:.1f}%"
          + (f", corpus-piece tokens {n['corpus_piece_token_share']:.1f}%" if "corpus_piece_token_share" in n else ""))
    print(f"option-distinguishing (object) tokens: {o['mean_tokens_per_name']:.2f} per object, single-letter "
          f"{o['single_char_token_share']:.1f}%" + (f", corpus pieces {o['corpus_piece_token_share']:.1f}%"
                                                    if "corpus_piece_token_share" in o else ""))
    fam = stats["familiarity_en"]
    print(f"familiarity baseline on the knowledge text (en): {fam['accuracy']:.1f}% (chance {fam['chance']:.1f}%), "
          f"every option's object occurs as often as the true one")

    out = os.path.abspath(args.output_dir)
    with atomic_path(out) as tmp:
        os.makedirs(os.path.join(tmp, "test"))
        os.makedirs(os.path.join(tmp, "knowledge"))
        with open(os.path.join(tmp, "facts.jsonl"), "w", encoding="utf-8") as fh:
            for f in facts:
                fh.write(json.dumps(clka.fact_record(f), ensure_ascii=False) + "\n")
        with open(os.path.join(tmp, "knowledge.jsonl"), "w", encoding="utf-8") as fh:
            for period in range(cfg.num_periods):
                for d in clka.knowledge_statements(facts, period=period, language="en", seed=args.seed):
                    fh.write(json.dumps({"text": d, "period": period}, ensure_ascii=False) + "\n")
        for lang in languages:
            with open(os.path.join(tmp, "test", f"{lang}.jsonl"), "w", encoding="utf-8") as fh:
                for item in clka.build_test_items(facts, lang, seed=args.seed):
                    fh.write(json.dumps(item, ensure_ascii=False) + "\n")
        encode = tokenizer.tokenize_clone if args.knowledge_language == "en_clone" else tokenizer.tokenize
        periods = []
        for period in range(cfg.num_periods):
            docs = clka.knowledge_statements(facts, period=period, language="en", seed=args.seed)
            name = f"period_{period:03d}_text_document"
            n_docs, n_tok = clka.write_token_documents(
                os.path.join(tmp, "knowledge", name),
                (list(encode(d)) + [tokenizer.eod] for d in docs),
                vocab_size=tokenizer.vocab_size,
            )
            start = args.start_iteration + period * args.steps_per_period
            periods.append({
                "period": period, "start_iteration": start, "end_iteration": start + args.steps_per_period,
                "data_prefix": os.path.join(out, "knowledge", name), "documents": n_docs, "tokens": n_tok,
                "facts": sum(1 for f in facts if f.period == period),
            })
            print(f"period {period}: {n_docs} statements, {n_tok} tokens -> knowledge/{name}")
        write_json(os.path.join(tmp, "schedule.json"), {
            "steps_per_period": args.steps_per_period, "knowledge_language": args.knowledge_language, "periods": periods,
        })
        write_json(os.path.join(tmp, "manifest.json"), {
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items() if k != "name_pieces"},
            "languages": languages, "knowledge_language": args.knowledge_language,
            "tokenizer": tokenizer.describe(), "facts": len(facts), "name_pieces": args.name_pieces,
            "name_case": args.name_case, "name_stats": stats,
        })
        if os.path.exists(out):
            shutil.rmtree(out)  # --overwrite: a folder cannot be renamed over a non-empty one
    print(f"CLKA: {len(facts)} facts, test sets {', '.join(languages)} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
