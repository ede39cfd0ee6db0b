"""Differences between the megatron-core releases we support (0.16.1 … 0.20.x).

Python 3.11 machines can only install 0.16.1 (0.17+ declare ``Requires-Python >=3.12``);
GPU clusters on Python 3.12 run a current release. Every version-dependent import or
signature the package relies on is resolved here, so the rest of the code has one spelling.

What differs between 0.16.1 and the newest release checked (0.19.2; 0.20 was not on PyPI when
this was written — ``tests/test_compat_mcore_newer.py`` re-checks whatever is newest ``<0.21``):

* ``get_num_layers_to_build`` lives in ``transformer_block`` (older: ``transformer_layer``).
* ``init_num_microbatches_calculator`` gained keyword-only extras (``step_batch_size_schedule``,
  ``seq_length``); :func:`init_num_microbatches` passes only the arguments every release takes.
* ``get_gpt_layer_*_spec`` take ``*args, **kwargs`` from 0.17 (same keywords accepted).
* ``dist_checkpointing.save/load`` dropped ``common_strategy`` (we never pass it).
* From 0.19, importing ``megatron.core.pipeline_parallel`` imports ``triton`` (MoE paged stash),
  so a CPU machine needs ``triton`` installed (it comes with CUDA builds of torch);
  :func:`missing_runtime_dependencies` names it before the import fails deep inside megatron.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

from megatron.core.package_info import __version__ as MCORE_VERSION  # noqa: N812

__all__ = [
    "MCORE_VERSION",
    "SUPPORTED_RANGE",
    "mcore_version",
    "get_num_layers_to_build",
    "init_num_microbatches",
    "missing_runtime_dependencies",
]

SUPPORTED_RANGE = ("0.16.1", "0.21.0")
"""Supported megatron-core versions, ``[low, high)`` (as in ``setup.py``)."""


def _parse(version: str) -> Tuple[int, int, int]:
    # the leading digits of each of the first three pieces ("0rc1" -> 0), missing ones 0
    parts = [int(m.group()) if (m := re.match(r"\d+", piece)) else 0
             for piece in version.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


@lru_cache(maxsize=None)
def mcore_version() -> Tuple[int, int, int]:
    """The installed megatron-core version as ``(major, minor, patch)``."""
    return _parse(MCORE_VERSION)


def missing_runtime_dependencies(version: Optional[str] = None) -> List[str]:
    """Modules the given (default: installed) megatron-core imports unconditionally but does not
    declare, and which are absent here (``["triton"]`` for 0.19+ on a machine without it)."""
    v = _parse(version) if version else mcore_version()
    needed: Sequence[str] = ("triton",) if v >= (0, 19, 0) else ()
    return [m for m in needed if importlib.util.find_spec(m) is None]


def init_num_microbatches(rank: int, rampup_batch_size: Optional[List[int]], global_batch_size: int,
                          micro_batch_size: int, data_parallel_size: int) -> None:
    """``megatron.core.num_microbatches_calculator.init_num_microbatches_calculator`` with the
    arguments every supported release takes (later ones add keyword-only extras). Replaces a
    calculator left by an earlier job in the same process (megatron-core refuses a second init)."""
    from megatron.core import num_microbatches_calculator as nmc

    nmc.destroy_num_microbatches_calculator()
    nmc.init_num_microbatches_calculator(rank, rampup_batch_size, global_batch_size, micro_batch_size,
                                         data_parallel_size, False)


try:  # 0.16 – 0.19 keep it here; older releases had it on the block module only
    from megatron.core.transformer.transformer_block import get_num_layers_to_build
except ImportError:  # pragma: no cover - depends on the installed release
    from megatron.core.transformer.transformer_layer import get_num_layers_to_build  # type: ignore
