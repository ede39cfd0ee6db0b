"""Synthetic data with known answers, generated from a seed (no corpus, no download).

* :mod:`.english` — a small English grammar: the quickstart's pretraining corpus.
* :mod:`.nli` — NLI pairs over that grammar with a rule-decided label (XNLI's layouts).
* :mod:`.clka_templates`, :mod:`.clka` — CLKA facts about artificial people, their knowledge
  statements and multilingual test sets (scored by :mod:`megatron_prealign.eval.clka`).
"""
