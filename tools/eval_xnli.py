"""XNLI zero-shot cross-lingual transfer of a checkpoint (paper §4.2; Tables 1, 3, 6).

Fine-tunes the checkpoint on **English** NLI training data only (full fine-tuning + a linear
3-way head on the last token of ``premise <eod> hypothesis <eod>``, as HF's
``GPT2ForSequenceClassification``), keeps the weights with the best English dev accuracy, then
reports test accuracy per target language with no target-language training. ``en_clone`` is the
English test set cloned token by token (needs an En-Clone tokenizer). Runs with TP=1, PP=1.
Fine-tuning uses the checkpoint's pretraining dropout unless ``--hidden-dropout`` /
``--attention-dropout`` override it (HF fine-tuning keeps the model's dropout too); dev and test
evaluation run in eval mode, without dropout.

Accepted files: XNLI 1.0 TSV (``xnli.dev.tsv``/``xnli.test.tsv``; filtered by language),
XNLI-MT TSV (``multinli.train.en.tsv``), MultiNLI JSONL (``multinli_1.0_train.jsonl``;
``gold_label "-"`` skipped and counted), HF-style JSONL (premise/hypothesis/label 0/1/2).
Malformed rows are reported as file:line and skipped (``--strict``: fail); unknown labels fail.

Examples::

    python tools/eval_xnli.py --load runs/prealign --train-file data/multinli_1.0_train.jsonl \\
        --dev-file data/XNLI-1.0/xnli.dev.tsv --test-file data/XNLI-1.0/xnli.test.tsv \\
        --languages en,de,zh,ru,ar --output results/prealign/xnli.json
    # En-Clone (synthetic setting): English test cloned
    python tools/eval_xnli.py --load runs/prealign_clone --train-file data/multinli_1.0_train.jsonl \\
        --dev-file data/XNLI-1.0/xnli.dev.tsv --test-file data/XNLI-1.0/xnli.test.tsv \\
        --languages en,en_clone --output results/prealign_clone/xnli.json
"""

from __future__ import annotations

import dataclasses
import sys
from typing import List

from megatron_prealign.cli.evaluation import eval_parser
from megatron_prealign.cli.tool import tool_main


@tool_main("eval_xnli.py")
def main(argv: List[str]) -> int:
    p = eval_parser(__doc__)
    p.add_argument("--train-file", required=True, help="English NLI training data.")
    p.add_argument("--dev-file", default=None, help="English dev data for model selection (XNLI TSV: its 'en' rows).")
    p.add_argument("--test-file", required=True, help="XNLI test TSV (all languages) or a single-language file.")
    p.add_argument("--extra-test", action="append", default=[], metavar="LANG=PATH", help="Further test files per language.")
    p.add_argument("--languages", default=None, help="Comma-separated target languages (default: en,de,zh,ru,ar; +en_clone for En-Clone).")
    p.add_argument("--strict", action="store_true", help="Fail on the first malformed row instead of skipping it.")
    p.add_argument("--max-length", type=int, default=128, help="Tokens per example incl. separators.")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=0, help="Also evaluate English dev every N steps.")
    p.add_argument("--max-train-examples", type=int, default=None)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--hidden-dropout", type=float, default=None,
                   help="Hidden dropout while fine-tuning (default: the checkpoint's pretraining value).")
    p.add_argument("--attention-dropout", type=float, default=None,
                   help="Attention dropout while fine-tuning (default: the checkpoint's pretraining value).")
    p.add_argument("--output", required=True, help="Result JSON (written atomically).")
    args = p.parse_args(argv)

    from megatron_prealign.eval import xnli
    from megatron_prealign.cli.evaluation import load_from_args
    from megatron_prealign.eval.loading import checkpoint_record
    from megatron_prealign.eval.nli_formats import NLIFormatError, read_nli
    from megatron_prealign.eval.runtime import is_main_rank
    from megatron_prealign.eval.results import format_table, result_header
    from megatron_prealign.platform.files import write_json_atomic
    from megatron_prealign.platform import seed_all

    stats = {}

    def read(path, language, key):
        try:
            ex, st = read_nli(path, language=language, strict=args.strict)
        except (OSError, NLIFormatError) as exc:
            p.exit(2, f"error: {exc}\n")
        stats[key] = st.to_dict()
        if st.malformed:
            print(f"warning: {path}: skipped {len(st.malformed)} malformed rows, e.g. {st.malformed[0]}")
        return ex

    train = read(args.train_file, "en", "train")
    dev = read(args.dev_file, "en", "dev") if args.dev_file else None
    if not train:
        p.error(f"--train-file {args.train_file}: no English examples")
    if args.tensor_model_parallel_size != 1:
        p.error("--tensor-model-parallel-size: XNLI fine-tuning runs with TP=1")
    for flag in ("hidden_dropout", "attention_dropout"):
        value = getattr(args, flag)
        if value is not None and not 0.0 <= value < 1.0:
            p.error(f"--{flag.replace('_', '-')} {value}: expected a probability in [0, 1)")
    model, cfg, meta, tok = load_from_args(args, for_training=True)
    if getattr(cfg, "bf16", False):
        print("warning: the checkpoint keeps bf16 parameters; fine-tuning updates them in bf16 with torch AdamW "
              "(no fp32 master weights) — expect slightly lower accuracy than an fp32 fine-tune")
    is_clone = hasattr(tok, "tokenize_clone")
    languages = ([x.strip().replace("-", "_") for x in args.languages.split(",") if x.strip()] if args.languages
                 else ["en", "de", "zh", "ru", "ar"] + (["en_clone"] if is_clone else []))
    if "en_clone" in languages and not is_clone:
        p.error("--languages en_clone needs an En-Clone tokenizer (checkpoint record or --en-clone)")
    extra = {}
    for spec in args.extra_test:
        if "=" not in spec:
            p.error(f"--extra-test {spec}: expected LANG=PATH")
        lang, path = spec.split("=", 1)
        extra[lang.replace("-", "_")] = path
    # The shared --test-file must hold every language it is used for: a file without a language
    # column (or with English rows only) would otherwise be scored again as de/zh/ru/ar.
    from_test_file = [lang for lang in languages if lang not in extra]
    if from_test_file:
        try:
            every, _ = read_nli(args.test_file, language=None, strict=False)
        except (OSError, NLIFormatError) as exc:
            p.exit(2, f"error: {exc}\n")
        recorded = {e.language for e in every}
        present = sorted(x for x in recorded if x) or ["en (no language column; assumed English)"]
        have = {x for x in recorded if x} or {"en"}
        missing = [lang for lang in from_test_file if ("en" if lang == "en_clone" else lang) not in have]
        if missing:
            p.error(f"--test-file {args.test_file}: no test examples for language(s) {', '.join(missing)}; "
                    f"languages in the file: {', '.join(present)} (pass --languages, or --extra-test LANG=PATH)")
    tests = {}
    for lang in languages:
        src_lang = "en" if lang == "en_clone" else lang
        path = extra.get(lang, args.test_file)
        ex = read(path, src_lang, f"test_{lang}")
        if not ex:
            p.error(f"{path}: no test examples for language {src_lang}")
        tests[lang] = ex

    seed_all(args.seed)
    config = xnli.XNLIConfig(max_length=args.max_length, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio, eval_every=args.eval_every,
                             max_train_examples=args.max_train_examples, seed=args.seed)
    classifier = xnli.NLIClassifier(model, cfg.hidden_size)
    run = xnli.finetune(classifier, train, tok.tokenize, tok.eod, config, dev=dev, pad_id=tok.eod, progress=True)
    results = {}
    for lang, ex in tests.items():
        encode = tok.tokenize_clone if lang == "en_clone" else tok.tokenize
        results[lang] = dataclasses.asdict(xnli.evaluate(classifier, ex, encode, tok.eod, config.max_length,
                                                         config.eval_batch_size, tok.eod, progress=True, desc=f"test {lang}"))
    payload = result_header("xnli", checkpoint_record(args.load, meta),
                            method="full fine-tuning, linear head on the last token of premise<eod>hypothesis<eod>; English only",
                            config=dataclasses.asdict(config), data=stats, finetune=run,
                            dropout={"hidden": cfg.hidden_dropout, "attention": cfg.attention_dropout})
    payload["results"] = results
    if not is_main_rank():
        return 0
    write_json_atomic(args.output, payload)
    print(format_table(["language", "examples", "accuracy"], [[k, v["examples"], v["accuracy"]] for k, v in results.items()], digits=1))
    if run.get("best_dev_accuracy") is not None:
        print(f"English dev (model selection): {run['best_dev_accuracy']:.1f} at step {run['best_step']}")
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
