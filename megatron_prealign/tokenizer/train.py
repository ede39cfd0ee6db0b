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

import contextlib
import json
import os
from typing import Dict, Iterable, Iterator, List, Sequence

__all__ = ["EOD_TOKEN", "PAD_TOKEN", "train_byte_level_bpe"]

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


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
    paths = [os.path.join(output_dir, name) for name in names]
    try:
        # the four files appear together: all are renamed after all are written
        with atomic_paths(paths) as (tok_json, config_json, vocab_json, merges):
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
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(output_dir)  # only if empty: nothing of ours is left in it
        raise
    return dict(zip(("tokenizer_json", "tokenizer_config", "vocab_file", "merge_file"), paths))
