"""Pretraining: Megatron-style flags, the stage schedule (pre-align -> LM), checkpoints, logging.

* :mod:`.config` — typed dataclasses the library takes (the flags are generated from them in
  :mod:`megatron_prealign.cli.pretrain`);
* :mod:`.stages` — which losses each iteration optimises (``--prealign-mode``);
* :mod:`.data` — blended ``MaskedGPTDataset`` train/valid/test and a resumable sampler;
* :mod:`.loop` — model/DDP/optimizer/scheduler construction and one training step;
* :mod:`.alignment` — the alignment stream contract (pre-alignment microbatches + loss);
* :mod:`.checkpointing` — Megatron-LM layout, torch_dist, resharding, ``load_model_for_eval``;
* :mod:`.metrics` — Megatron-style log lines and TensorBoard;
* :mod:`.pretrain` — ``pretrain()``, the job.
"""
