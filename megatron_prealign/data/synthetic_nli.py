from megatron_prealign.synthetic.nli import *  # noqa: F401,F403  (examples/quickstart/run.py; moved)
