"""Checkpoints on disk: :mod:`.layout` owns Megatron-LM's layout and reading it (training, eval, export)."""
