"""Megatron-Core GPT model construction and the PreAlign losses attached to it.

* :mod:`~megatron_prealign.model.gpt` — ``GPTModelConfig`` / ``build_gpt_model``.
* :mod:`~megatron_prealign.model.supcon` — the supervised contrastive loss (pure functions).
* :mod:`~megatron_prealign.model.word_batches` — aligned words as pre-alignment
  microbatches, one word per row (``WordBatchSampler``, ``word_rows``).
* :mod:`~megatron_prealign.model.prealign` — the pre-alignment loss on GPTModel under
  TP/SP/PP/DP: ``PreAlignForwardStep`` (a Megatron ``forward_step_func``), per-level logging,
  aligned-word cosine similarity.

Submodules are imported explicitly (``from megatron_prealign.model.prealign import ...``); this
package imports nothing, so that importing it stays cheap.
"""
