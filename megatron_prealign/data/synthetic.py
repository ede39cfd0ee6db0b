from megatron_prealign.synthetic.english import *  # noqa: F401,F403  (examples/quickstart/run.py; moved)
