"""Train a byte-level BPE tokenizer on local text (the ``tokenizers`` library), GPT-2 style.

Writes both forms the loaders read:

* ``{output_dir}/tokenizer.json`` (+ ``tokenizer_config.json`` naming EOD/pad) for
  ``--tokenizer-type HuggingFaceTokenizer --tokenizer-model {output_dir}``;
* ``{output_dir}/vocab.json`` + ``{output_dir}/merges.txt`` for
  ``--tokenizer-type GPT2BPETokenizer --vocab-file ... --merge-file ...``.

Both give identical ids (GPT-2 pre-tokenization, no normalizer, no prefix space). Special tokens
(``<|endoftext|>`` = EOD first, then ``<|pad|>`` unless disabled) take the lowest ids.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

__all__ = ["EOD_TOKEN", "PAD_TOKEN", "train_byte_level_bpe", "iter_text_files"]

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def _text_lines(path: str) -> Iterator[Tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 (optionally gzipped) file; invalid UTF-8 -> a
    ``ValueError`` naming ``path:line`` (instead of a bare ``UnicodeDecodeError``)."""
    if path.lower().endswith(".gz"):
        import gzip

        f = gzip.open(path, "rb")
    else:
        f = open(path, "rb")
    with f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except (OSError, EOFError) as e:  # e.g. a corrupt or truncated .gz
                raise ValueError(f"{path}:{lineno + 1}: cannot read ({e})") from None
            if not raw:
                return
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid UTF-8 ({e.reason} at byte {e.start})") from None
            yield lineno, (line[:-2] + "\n" if line.endswith("\r\n") else line)


def _expand_paths(paths: Sequence[str]) -> List[str]:
    """``--input`` values (files, globs, directories) -> files, as ``tools/preprocess_data.py``."""
    import glob

    from megatron_prealign.data.readers import InputError, expand_inputs

    for path in paths:
        if not glob.has_magic(path) and not os.path.exists(path):
            raise FileNotFoundError(f"--input: no such file: {path}")
    try:
        return expand_inputs(paths)
    except InputError as e:
        raise FileNotFoundError(str(e)) from None


def _file_format(path: str) -> str:
    """``jsonl`` / ``parquet`` / ``text`` by extension, as the binarizer's reader decides it
    (.jsonl/.json/.ndjson, any case, optionally .gz); unknown extensions are plain text."""
    from megatron_prealign.data.readers import InputError, detect_format

    try:
        return detect_format(path)
    except InputError:
        return "text"


def _documents_of(value) -> Iterator[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, list):  # Megatron's pre-split sentences
        for v in value:
            if isinstance(v, str) and v:
                yield v


def iter_text_files(paths: Sequence[str], json_keys: Sequence[str] = ("text",)) -> Iterator[str]:
    """Yield documents from local files, streamed.

    ``paths`` are files, globs or directories (expanded as ``tools/preprocess_data.py`` does);
    the format comes from the extension as in the binarizer's reader. JSONL (``.jsonl``,
    ``.json``, ``.ndjson``, optionally ``.gz``): one JSON object per line, every ``json_keys``
    field that is a string (or a list of strings: one document each) is a document.
    ``.parquet`` (CulturaX shards): the ``json_keys`` columns, read in record batches. Anything
    else (``.txt``, ``.txt.gz``): one document per non-empty line.

    Raises:
        FileNotFoundError: a path does not exist (names it).
        ValueError: a JSONL line is not valid JSON, or a parquet file lacks a column (names
            file and line/column).
    """
    for path in _expand_paths(paths):
        fmt = _file_format(path)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            missing = [k for k in json_keys if k not in pf.schema_arrow.names]
            if missing:
                raise ValueError(
                    f"{path}: no column {missing[0]!r} (columns: {', '.join(pf.schema_arrow.names)}); "
                    "set --json-keys"
                )
            for batch in pf.iter_batches(columns=list(json_keys), batch_size=4096):
                for key in json_keys:
                    for t in batch.column(key).to_pylist():
                        yield from _documents_of(t)
        elif fmt == "jsonl":
            for lineno, line in _text_lines(path):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object")
                for key in json_keys:
                    yield from _documents_of(obj.get(key))
        else:
            for _, line in _text_lines(path):
                if line.strip():
                    yield line


def train_byte_level_bpe(
    texts: Iterable[str],
    output_dir: str,
    vocab_size: int = 32000,
    min_frequency: int = 2,
    add_pad: bool = True,
    special_tokens: Sequence[str] = (),
) -> Dict[str, str]:
    """Train a GPT-2-style byte-level BPE and write it (temporary directory + rename per file).

    Args:
        texts (Iterable[str]): training documents.
        output_dir (str): created if missing.
        vocab_size (int): target vocabulary size (including the 256 bytes and specials).
        min_frequency (int): minimum pair count for a merge.
        add_pad (bool): add ``<|pad|>`` after ``<|endoftext|>``.
        special_tokens (Sequence[str]): further special tokens.

    Returns:
        Dict[str, str]: paths ``tokenizer_json``, ``tokenizer_config``, ``vocab_file``,
        ``merge_file``.

    Raises:
        ValueError: ``vocab_size`` below the 256 bytes + special tokens, ``min_frequency`` < 1,
            or no non-empty text (nothing is written).
        OSError: the files cannot be written (e.g. a full disk); nothing is left behind.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials: List[str] = [EOD_TOKEN] + ([PAD_TOKEN] if add_pad else []) + [
        t for t in special_tokens if t not in (EOD_TOKEN, PAD_TOKEN)
    ]
    smallest = 256 + len(specials)
    if vocab_size < smallest:
        raise ValueError(f"--vocab-size {vocab_size}: must be at least {smallest} (256 bytes + {len(specials)} special tokens)")
    if min_frequency < 1:
        raise ValueError(f"--min-frequency {min_frequency}: must be >= 1")
    seen = [0]

    def counted(items: Iterable[str]) -> Iterator[str]:
        for t in items:
            if t:
                seen[0] += 1
                yield t

    texts = counted(texts)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if seen[0] == 0:
        raise ValueError("no training text: the inputs hold no non-empty document (check --input and --json-keys)")

    from megatron_prealign.platform.files import atomic_paths

    created = not os.path.isdir(output_dir)
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
    done = False
    try:
        # the four files appear together: all are renamed after all are written
        with atomic_paths([os.path.join(output_dir, name) for name in names]) as (tok_json, config_json, vocab_json, merges):
            try:
                tok.save(tok_json)
            except Exception as err:  # the tokenizers library raises a plain Exception for I/O errors
                raise OSError(f"{output_dir}: cannot write tokenizer.json ({err})") from None
            with open(config_json, "w", encoding="utf-8") as f:
                config = {"eos_token": EOD_TOKEN, "bos_token": None}
                if add_pad:
                    config["pad_token"] = PAD_TOKEN
                json.dump(config, f, indent=2)
            spec = json.loads(tok.to_str())
            vocab: Dict[str, int] = spec["model"]["vocab"]
            for added in spec.get("added_tokens", []):
                vocab.setdefault(added["content"], added["id"])
            with open(vocab_json, "w", encoding="utf-8") as f:
                json.dump(dict(sorted(vocab.items(), key=lambda kv: kv[1])), f, ensure_ascii=False)
            with open(merges, "w", encoding="utf-8") as f:
                f.write("#version: 0.2\n")
                for merge in spec["model"]["merges"]:
                    f.write((merge if isinstance(merge, str) else " ".join(merge)) + "\n")
        done = True
    finally:
        if not done and created:
            try:
                os.rmdir(output_dir)  # only if empty: nothing of ours is left in it
            except OSError:
                pass
    return {
        "tokenizer_json": os.path.join(output_dir, "tokenizer.json"),
        "tokenizer_config": os.path.join(output_dir, "tokenizer_config.json"),
        "vocab_file": os.path.join(output_dir, "vocab.json"),
        "merge_file": os.path.join(output_dir, "merges.txt"),
    }
