"""The command-line layer: the only library package that imports ``argparse``.

* :mod:`.pretrain` — ``pretrain_prealign.py``'s flags (Megatron-LM's names plus PreAlign's),
  validated and converted to :class:`~megatron_prealign.training.config.PretrainConfig`;
* :mod:`.tokenizer` — Megatron-LM's tokenizer flags for every tool;
* :mod:`.evaluation` — the checkpoint flags every evaluation tool shares.

Library code below this layer takes dataclasses or plain arguments, never a namespace.
"""
