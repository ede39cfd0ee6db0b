"""Shared pytest configuration.

- ``gpu`` tests are skipped when CUDA is absent (CPU machines run everything else).
- ``single_process_parallel_state``: one process-wide torch.distributed (world size 1) and
  megatron-core parallel state at TP=PP=1, for tests that run a model in the pytest process.
  torch.distributed can be initialised only once per process, so every such test shares it.
"""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def single_process_parallel_state():
    """Initialise torch.distributed (1 process) and megatron-core's parallel state once."""
    from megatron.core import parallel_state

    from megatron_prealign.platform import initialize

    initialize(seed=None)  # a 1-process run picks a free MASTER_PORT
    yield parallel_state
