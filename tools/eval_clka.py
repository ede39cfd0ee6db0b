"""Evaluate CLKA accuracy of a checkpoint per language (paper Tables 1, 3, 6; Fig. 4).

Each test item's 4 statements are ranked by the model's log-likelihood of the whole statement
(sum of token log-probs after an EOD context); the accuracy with per-token (length-normalised)
likelihood is reported alongside. Chance is 25%. ``en_clone`` scores ``test/en.jsonl`` with
every token cloned (the tokenizer must be an En-Clone tokenizer, recorded in the checkpoint or
given with ``--en-clone``). ``en`` on English knowledge is the paper's English-test control.

Controls printed beside every accuracy (and written under ``controls`` / ``control``): the chance
level and binomial standard error; with ``--familiarity-text`` the familiarity baseline per
language (pick the option whose object occurs most often in that training text; make_clka's
``knowledge.jsonl``); ``--control no-knowledge`` labels a run of a model trained without the
knowledge text. English CLKA means something only far above both.

Examples::

    python tools/eval_clka.py --load runs/prealign --test-dir data/clka --languages en_clone,en \\
        --familiarity-text data/clka/knowledge.jsonl --output results/prealign/clka.json
    # the no-knowledge control: same tool, a model trained without the knowledge text
    python tools/eval_clka.py --load runs/no_knowledge --test-dir data/clka --languages en_clone,en \\
        --familiarity-text data/clka/knowledge.jsonl --control no-knowledge --output results/no_knowledge/clka.json
    # one injection period of Fig. 4 on the checkpoint saved at its end
    python tools/eval_clka.py --load runs/prealign --iteration 2250 --test-dir data/clka_periods \\
        --period 0 --languages en,en_clone --output results/prealign/clka_p0.json
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import List

from megatron_prealign.cli.evaluation import eval_parser
from megatron_prealign.cli.tool import tool_main


@tool_main("eval_clka.py")
def main(argv: List[str]) -> int:
    p = eval_parser(__doc__)
    p.add_argument("--test-dir", required=True, help="--output-dir of tools/make_clka.py (reads test/{lang}.jsonl).")
    p.add_argument("--languages", default=None, help="Comma-separated (default: every test file, plus en_clone for En-Clone tokenizers).")
    p.add_argument("--period", type=int, default=None, help="Only items of this injection period.")
    p.add_argument("--batch-size", type=int, default=32, help="Statements per forward pass.")
    p.add_argument("--familiarity-text", nargs="+", default=None,
                   help="Training text(s) (JSONL 'text' fields or plain text; e.g. make_clka's knowledge.jsonl) for the "
                        "familiarity baseline: pick the option whose object occurs most often there (ties share credit).")
    p.add_argument("--control", default=None,
                   help="Label this run as a control (e.g. 'no-knowledge': the same training without the knowledge "
                        "text); recorded in the JSON and printed.")
    p.add_argument("--output", required=True, help="Result JSON (written atomically).")
    args = p.parse_args(argv)

    from megatron_prealign.eval import clka
    from megatron_prealign.cli.evaluation import load_from_args
    from megatron_prealign.eval.loading import checkpoint_record
    from megatron_prealign.eval.runtime import is_main_rank
    from megatron_prealign.eval.results import format_table, result_header
    from megatron_prealign.platform.files import write_json_atomic
    from megatron_prealign.eval.scoring import score_sequences

    test_dir = os.path.join(args.test_dir, "test")
    if not os.path.isdir(test_dir):
        p.error(f"--test-dir {args.test_dir}: no test/ folder (run tools/make_clka.py)")
    familiarity_text = None
    if args.familiarity_text:
        try:
            familiarity_text = clka.read_familiarity_text(args.familiarity_text)
        except (OSError, ValueError) as exc:
            p.error(str(exc))
    model, cfg, meta, tok = load_from_args(args)
    is_clone = hasattr(tok, "tokenize_clone")
    if args.languages:
        languages = [x.strip().replace("-", "_") for x in args.languages.split(",") if x.strip()]
    else:
        languages = sorted(f[:-6] for f in os.listdir(test_dir) if f.endswith(".jsonl")) + (["en_clone"] if is_clone else [])
    results, familiarity = [], {}
    for lang in languages:
        if lang == "en_clone":
            if not is_clone:
                p.error("--languages en_clone needs an En-Clone tokenizer (checkpoint record or --en-clone)")
            path, encode = os.path.join(test_dir, "en.jsonl"), tok.tokenize_clone
        else:
            path, encode = os.path.join(test_dir, f"{lang}.jsonl"), tok.tokenize
        try:
            items = clka.read_test_items(path)
        except (OSError, ValueError) as exc:
            p.error(str(exc))
        if args.period is not None:
            items = [it for it in items if it.get("period") == args.period]
        if not items:
            p.error(f"{path}: no test items" + (f" for period {args.period}" if args.period is not None else ""))
        score = lambda c, s: score_sequences(model, c, s, batch_size=args.batch_size, pad_id=tok.eod, progress=True)  # noqa: E731
        if familiarity_text is not None:
            try:
                if not all(it.get("objects_en") for it in items):  # an older test set: objects from facts.jsonl
                    items = clka.attach_objects(items, os.path.join(args.test_dir, "facts.jsonl"))
                familiarity[lang] = clka.familiarity_baseline(items, familiarity_text, lang)
            except (OSError, ValueError) as exc:
                p.error(f"{path}: {exc}")
        res = clka.evaluate_items(items, encode, score, [tok.eod], lang)
        results.append(res)
    payload = result_header("clka", checkpoint_record(args.load, meta), test_dir=os.path.abspath(args.test_dir),
                            period=args.period, ranking="sum of statement log-probs after <eod>; chance 25%",
                            control=args.control,
                            familiarity_text=[os.path.abspath(x) for x in args.familiarity_text] if args.familiarity_text else None)
    payload["results"] = {r.language: dataclasses.asdict(r) for r in results}
    payload["controls"] = {"familiarity": {k: dataclasses.asdict(v) for k, v in familiarity.items()}}
    if not is_main_rank():
        return 0
    write_json_atomic(args.output, payload)
    if args.control:
        print(f"CONTROL RUN: {args.control}")
    header = ["language", "items", "acc ± se", "acc (len-norm)", "chance"] + (["familiarity ± se"] if familiarity else [])
    rows = []
    for r in results:
        row = [r.language, r.items, f"{r.accuracy:.1f} ± {r.stderr:.1f}", r.accuracy_length_normalized, r.chance]
        if familiarity:
            f = familiarity.get(r.language)
            row.append(f"{f.accuracy:.1f} ± {f.stderr:.1f}" if f else "-")
        rows.append(row)
    print(format_table(header, rows, digits=1))
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
