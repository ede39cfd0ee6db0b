"""Pretraining: Megatron-style flags, the stage schedule (pre-align -> LM), checkpoints, logging.

* :mod:`.config` — typed dataclasses the library takes (the flags are generated from them in
  :mod:`megatron_prealign.cli.pretrain`);
* :mod:`.stages` — which losses each iteration optimises (``--prealign-mode``);
* :mod:`.data` — blended ``MaskedGPTDataset`` train/valid/test and a resumable sampler;
* :mod:`.loop` — model/DDP/optimizer/scheduler construction and one training step;
* :mod:`.alignment` — the alignment stream contract (pre-alignment microbatches + loss);
* :mod:`.checkpointing` — saving/resuming training state (optimizer, scheduler, RNG) in Megatron-LM's
  format (the layout itself: :mod:`megatron_prealign.checkpoint.layout`);
* :mod:`.metrics` — Megatron-style log lines and TensorBoard;
* :mod:`.pretrain` — ``pretrain()``, the job.
"""
