"""Evaluation of cross-lingual transfer (paper §4.2, §5.2-5.5): the metrics behind tools/eval_*.py.

Modules:

* :mod:`.scoring` — per-token log-probabilities, sequence scores, last-token hidden states and
  greedy/sampled generation over Megatron-Core's ``GPTModel`` (vocab-parallel safe).
* :mod:`.results` — atomic JSON results and readable tables.
* :mod:`.runtime` — the main-rank check (set-up is :func:`megatron_prealign.platform.initialize`).
* :mod:`.loading` — the one entry point that loads a checkpoint (and its tokenizer) for evaluation.
* :mod:`.perplexity` — per-language perplexity on binarized data, split into seen/unseen words.
* :mod:`.nli_formats` — readers for XNLI 1.0 TSV, MultiNLI JSONL and HF-style JSONL.
* :mod:`.xnli` — zero-shot cross-lingual transfer (fine-tune on English, test on targets).
* :mod:`.clka` — the CLKA scorer (the generator: :mod:`megatron_prealign.synthetic.clka`).
* :mod:`.mixed_script` — share of English-prompt continuations containing target-language tokens.
* :mod:`.similarity` — aligned-word cosine similarity per level.
* :mod:`.summary` — paper-style tables and curves from result JSONs.
* :mod:`.report` — the En -> En-Clone side-by-side report (arms, controls, gap shares, seeds).
"""
