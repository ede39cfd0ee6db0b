"""Build a PreAlign alignment table: frequent English words -> translations, as token ids.

Words come from an English corpus (JSONL ``--json-keys``, CulturaX parquet, plain text; gzip
ok), tokenized with NLTK's word tokenizer offline and counted (paper App. A: words seen at least
20 times; ``--top-fraction`` keeps only the most frequent share, paper Table 5). Translations
come from bilingual dictionaries, one ``--dictionary LANG:PATH`` per file (MUSE ``src tgt``,
TSV ``src<TAB>tgt``, PreAlign JSONL ``{"words": "bank $ Bank $ Ufer"}`` /
``{"src_text", "tgt_text"}``). With ``--en-clone`` every word maps to its En-Clone twin instead.
Writes the table (JSONL, see megatron_prealign/alignment/table.py) and a coverage report
(printed, and JSON at ``--coverage-report``, default ``OUTPUT.coverage.json``).

Examples::

    python tools/build_alignment_table.py --input data/culturax_en/*.parquet --json-keys text \\
        --dictionary de:dicts/en-de.txt --dictionary zh:dicts/en-zh.txt \\
        --dictionary ru:dicts/en-ru.jsonl --min-count 20 --workers 8 \\
        --tokenizer-type GPT2BPETokenizer --vocab-file vocab.json --merge-file merges.txt \\
        --save-word-counts tables/en.counts.tsv --output tables/en-de-zh-ru.jsonl

    # re-use the counts, top 25% of words (Table 5):
    python tools/build_alignment_table.py --word-counts tables/en.counts.tsv --top-fraction 0.25 \\
        --dictionary de:dicts/en-de.txt --tokenizer-type HuggingFaceTokenizer \\
        --tokenizer-model tokenizers/bpe32k --output tables/en-de.top25.jsonl

    # En-Clone (synthetic setting):
    python tools/build_alignment_table.py --input data/en.jsonl --en-clone \\
        --tokenizer-type GPT2BPETokenizer --vocab-file vocab.json --merge-file merges.txt \\
        --output tables/en_clone.jsonl
"""

import argparse
import itertools
import sys
import time
from typing import List

from megatron_prealign.alignment.build import (
    AlignmentBuildConfig,
    build_alignment_table,
    CASE_FALLBACKS,
    build_en_clone_table,
    format_coverage,
    measure_reach,
)
from megatron_prealign.alignment.dictionaries import DICTIONARY_FORMATS, parse_dictionary_spec, read_dictionary
from megatron_prealign.alignment.words import (
    WordCountConfig,
    count_words,
    load_word_counts,
    save_word_counts,
    select_words,
)
from megatron_prealign.cli.tokenizer import add_tokenizer_args, build_tokenizer_from_args
from megatron_prealign.cli.tool import tool_main
from megatron_prealign.data.readers import iter_documents
from megatron_prealign.platform.files import write_json_atomic


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("words")
    g.add_argument("--input", nargs="+", default=None,
                   help="English corpus files, globs or directories (JSONL[.gz], parquet, text).")
    g.add_argument("--json-keys", nargs="+", default=["text"], help="JSONL keys / parquet columns.")
    g.add_argument("--word-counts", default=None, help="Read word counts (word<TAB>count) instead of --input.")
    g.add_argument("--save-word-counts", default=None, help="Write all word counts here (word<TAB>count).")
    g.add_argument("--min-count", type=int, default=20, help="Keep words seen at least this often.")
    g.add_argument("--top-fraction", type=float, default=1.0, help="Then keep this most frequent share.")
    g.add_argument("--max-documents", type=int, default=None, help="Read at most this many documents.")
    g.add_argument("--workers", type=int, default=1, help="Processes tokenizing the corpus.")
    g.add_argument("--log-interval", type=float, default=10.0, help="Seconds between progress lines.")
    d = p.add_argument_group("translations")
    d.add_argument("--dictionary", action="append", default=[], metavar="LANG:PATH",
                   help="Bilingual dictionary for LANG (repeatable; several files per LANG allowed).")
    d.add_argument("--dictionary-format", default="auto", choices=DICTIONARY_FORMATS)
    d.add_argument("--strict", action="store_true", help="A malformed dictionary line is an error.")
    d.add_argument("--max-translations", type=int, default=None, help="Per word and language.")
    d.add_argument("--keep-identical", action="store_true", help="Keep translations equal to the word.")
    d.add_argument("--keep-untranslated", action="store_true", help="Keep words without translations.")
    d.add_argument("--case-fallback", choices=CASE_FALLBACKS, default="auto",
                   help="auto: a capitalised word without an exact entry is translated through its lower "
                        "case when the corpus counts say it is mostly a common word (count(lower) >= "
                        "count(word) > 0), keeping the capital where the target script has case; proper nouns "
                        "stay. off: exact forms only.")
    d.add_argument("--no-case-fallback", action="store_const", const="off", dest="case_fallback",
                   help="Same as --case-fallback off.")
    d.add_argument("--coverage-documents", type=int, default=2000,
                   help="Documents of --input on which the codeswitcher's own matcher measures what it can "
                        "reach (0: skip).")
    o = p.add_argument_group("output")
    o.add_argument("--output", required=True, help="Alignment table (.jsonl).")
    o.add_argument("--coverage-report", default=None, help="Coverage JSON (default OUTPUT.coverage.json).")
    add_tokenizer_args(p)
    args = p.parse_args(argv)
    if (args.input is None) == (args.word_counts is None):
        p.error("give exactly one of --input and --word-counts")
    if not args.dictionary and not args.en_clone:
        p.error("give at least one --dictionary LANG:PATH, or --en-clone")
    if args.dictionary and args.en_clone:
        p.error("--en-clone builds the En-Clone table; it does not take --dictionary")
    return p, args


@tool_main("build_alignment_table.py")
def main(argv: List[str]) -> int:
    parser, args = get_args(argv)
    start = time.time()
    tokenizer = build_tokenizer_from_args(args, parser)
    dictionaries = {}
    for spec in args.dictionary:
        lang, path = parse_dictionary_spec(spec)
        dictionaries.setdefault(lang, []).append(
            read_dictionary(path, lang, args.dictionary_format, strict=args.strict)
        )
    if args.word_counts:
        counts = load_word_counts(args.word_counts)
    else:
        counts = count_words(
            iter_documents(args.input, args.json_keys),
            WordCountConfig(workers=args.workers, max_documents=args.max_documents,
                            log_interval=args.log_interval),
        )
    if args.save_word_counts:
        save_word_counts(counts, args.save_word_counts)
    words = select_words(counts, args.min_count, args.top_fraction)
    if not words:
        source = args.word_counts or " ".join(args.input)
        raise ValueError(
            f"{source}: no word reaches --min-count {args.min_count} "
            f"({len(counts)} distinct words, the most frequent seen {max(counts.values(), default=0)} times)"
        )

    meta = {
        "inputs": args.input, "word_counts": args.word_counts, "json_keys": args.json_keys,
        "min_count": args.min_count, "top_fraction": args.top_fraction,
        "dictionaries": args.dictionary, "max_documents": args.max_documents,
        "word_tokenizer": "nltk.NLTKWordTokenizer (preserve_line)",
    }
    total = sum(counts.values())
    if args.en_clone:
        table = build_en_clone_table(tokenizer, words, meta=meta)
        in_table = {e.word for e in table} | {a for e in table for a in e.aliases}
        translated = [(w, c) for w, c in words if w in in_table]
        report = {
            "words_counted": len(counts), "words_kept": len(words), "words_with_translation": len(translated),
            "fraction_with_translation": len(translated) / len(words) if words else 0.0, "entries": len(table),
            "aliases_merged": sum(len(e.aliases) for e in table),
            "words_unencodable": len(words) - len(translated), "occurrences_total": total,
            "occurrences_kept": sum(c for _, c in words), "occurrences_translated": sum(c for _, c in translated),
            "per_language": {}, "dictionaries": [],
        }
    else:
        cfg = AlignmentBuildConfig(
            case_fallback=args.case_fallback, keep_identical=args.keep_identical,
            keep_untranslated=args.keep_untranslated, max_translations=args.max_translations,
        )
        table, report = build_alignment_table(
            words, dictionaries, tokenizer, cfg, words_counted=len(counts), total_occurrences=total,
            meta=meta, counts=counts,
        )
    if args.input and args.coverage_documents > 0:
        docs = itertools.islice(iter_documents(args.input, args.json_keys), args.coverage_documents)
        report["reach"] = measure_reach(table, tokenizer, docs)
        table.meta.setdefault("coverage", {})["reach"] = report["reach"]
    report_path = args.coverage_report or args.output + ".coverage.json"
    table.save(args.output)
    write_json_atomic(report_path, report)
    print(format_coverage(report))
    print(f"[build_alignment_table] {len(table)} entries -> {args.output} (report {report_path}), "
          f"{time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
