"""Mixed-script ratio of a checkpoint (paper Table 4): share of English-prompt continuations
that contain target-language tokens.

Prompts come from ``--prompts`` (text, one per line, or JSONL with ``text``/``prompt``) or from
held-out English data (``--prompt-data PREFIX``: the first ``--prompt-tokens`` tokens of each
document). Continuations are greedy by default (``--temperature`` > 0 samples, seeded).
Detection per language is described in ``megatron_prealign.eval.mixed_script`` (En-Clone: clone
ids; zh/ru/ar: Unicode script; de: German letters or German-only table words).

Examples::

    python tools/eval_mixed_script.py --load runs/input_only_cs --prompt-data data/en_valid_text_document \\
        --num-prompts 1000 --max-new-tokens 64 --languages en_clone --output results/input_only_cs/mixed.json
    python tools/eval_mixed_script.py --load runs/real --prompts prompts_en.txt --languages zh,ru,ar,de \\
        --alignment-table data/table.jsonl --output results/real/mixed.json
"""

from __future__ import annotations

import dataclasses
import sys
from typing import List

from megatron_prealign.cli.evaluation import eval_parser
from megatron_prealign.cli.tool import tool_main


@tool_main("eval_mixed_script.py")
def main(argv: List[str]) -> int:
    p = eval_parser(__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", help="Prompt file (text lines or JSONL).")
    src.add_argument("--prompt-data", help="English Megatron dataset prefix; prompts = document prefixes.")
    p.add_argument("--prompt-tokens", type=int, default=32, help="Prompt length when using --prompt-data.")
    p.add_argument("--num-prompts", type=int, default=500, help="Prompts used at most.")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy.")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--languages", default=None, help="Comma-separated (default: en_clone for En-Clone tokenizers, else zh,ru,ar,de).")
    p.add_argument("--alignment-table", default=None, help="For de: German-only table words also count.")
    p.add_argument("--output", required=True, help="Result JSON (written atomically).")
    args = p.parse_args(argv)

    import torch

    from megatron_prealign.eval import mixed_script as ms
    from megatron_prealign.cli.evaluation import load_alignment_table, load_from_args
    from megatron_prealign.eval.loading import checkpoint_record
    from megatron_prealign.eval.runtime import is_main_rank
    from megatron_prealign.eval.results import format_table, result_header
    from megatron_prealign.platform.files import write_json_atomic
    from megatron_prealign.eval.scoring import generate

    prompts_text = None
    if args.prompts:
        try:
            prompts_text = ms.read_prompts(args.prompts)[: args.num_prompts]
        except (OSError, ValueError) as exc:
            p.error(str(exc))
    table = load_alignment_table(args.alignment_table)
    german = ms.german_only_words(table) if table is not None else None
    model, cfg, meta, tok = load_from_args(args)
    is_clone = hasattr(tok, "tokenize_clone")
    languages = ([x.strip().replace("-", "_") for x in args.languages.split(",") if x.strip()] if args.languages
                 else (["en_clone"] if is_clone else ["zh", "ru", "ar", "de"]))
    if "en_clone" in languages and not is_clone:
        p.error("--languages en_clone needs an En-Clone tokenizer (checkpoint record or --en-clone)")
    if prompts_text is not None:
        prompts = [tok.tokenize(t) for t in prompts_text]
    else:
        from megatron_prealign.eval.perplexity import iter_documents

        try:
            prompts = [d[: args.prompt_tokens].tolist() for d in iter_documents(args.prompt_data, args.num_prompts)]
        except FileNotFoundError as exc:
            p.error(str(exc))
    prompts = [q for q in prompts if q]
    if not prompts:
        p.error("no non-empty prompts")
    gen = torch.Generator().manual_seed(args.seed)
    from tqdm import tqdm

    outputs = []
    for start in tqdm(range(0, len(prompts), args.batch_size), desc="generate", unit="batch"):
        outputs += generate(model, prompts[start : start + args.batch_size], args.max_new_tokens, eod_id=tok.eod,
                            temperature=args.temperature, top_k=args.top_k, vocab_limit=tok.vocab_size,
                            batch_size=args.batch_size, generator=gen)
    results = [ms.mixed_script_ratio(outputs, lang, tok.detokenize, getattr(tok, "base_vocab_size", None), german)
               for lang in languages]
    payload = result_header("mixed_script", checkpoint_record(args.load, meta), prompts=len(prompts),
                            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    payload["results"] = {r.language: dataclasses.asdict(r) for r in results}
    if not is_main_rank():
        return 0
    write_json_atomic(args.output, payload)
    print(format_table(["language", "generations", "mixed", "ratio %"], [[r.language, r.generations, r.mixed, r.ratio] for r in results]))
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
