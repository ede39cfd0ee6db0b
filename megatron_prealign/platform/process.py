"""Process hygiene: free ports, children that die with their parent, stale temporary files.

* :func:`free_port` / :func:`ensure_master_port`: a 1-process run outside torchrun needs a
  rendezvous port; a fixed one (Megatron's habitual 29500) makes two tools started at once
  collide. An explicit ``MASTER_PORT`` is always respected.
* :func:`die_with_parent`: a worker process (DataLoader worker, tokenizing pool worker) asks the
  kernel for ``SIGKILL`` when its parent dies, so ``kill -9`` of a run leaves no orphans holding
  memory (Linux ``prctl(PR_SET_PDEATHSIG)``; a no-op elsewhere).
* :func:`remove_stale_temp_files`: outputs are written as ``<output>...tmp-<pid>[...]`` and
  renamed; a run killed with ``kill -9`` leaves those behind. The next run writing the same
  output removes the ones whose writer pid is no longer alive.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import socket
from typing import List

logger = logging.getLogger(__name__)

__all__ = ["die_with_parent", "ensure_master_port", "free_port", "pid_alive", "remove_dead_temporaries", "remove_stale_temp_files",
           "temp_name"]

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ensure_master_port() -> str:
    """Set ``MASTER_PORT`` to a free port unless it is already set (torchrun or the user set it).

    Returns:
        The port in use.
    """
    if not os.environ.get("MASTER_PORT"):
        os.environ["MASTER_PORT"] = str(free_port(os.environ.get("MASTER_ADDR", "127.0.0.1")))
    return os.environ["MASTER_PORT"]


def die_with_parent(parent_pid: int = 0) -> bool:
    """Make the calling process receive ``SIGKILL`` when its parent process dies.

    Call it first thing in a child (pool initializer, DataLoader ``worker_init_fn``). If the
    parent already died before the call (the race prctl cannot see), the child kills itself.

    Args:
        parent_pid: the expected parent pid (0: do not check for the race).

    Returns:
        Whether the kernel accepted the request (False off Linux).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if ok and parent_pid and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    return ok


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a pid we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_name(path: str) -> str:
    """The temporary name a writer of ``path`` in this process uses: ``{path}.tmp-{pid}``."""
    return f"{path}.tmp-{os.getpid()}"


def remove_stale_temp_files(path: str) -> List[str]:
    """Remove temporary files/directories of dead writers of ``path``.

    Matches entries of ``path``'s directory named ``{basename(path)}<anything>.tmp-<pid>`` with
    an optional extension after the pid (``x.bin.tmp-12``, ``x.tmp-12.idx``, ``x.json.tmp-12``),
    where ``<pid>`` is not a living process and not this one. A pid reused by an unrelated live
    process keeps its files (never removes what might be in use).

    Returns:
        The removed paths.
    """
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(os.path.normpath(path))
    if not base or not os.path.isdir(folder):
        return []
    return remove_dead_temporaries(folder, re.compile(re.escape(base) + r"[^/]*?\.tmp-(?P<pid>\d+)(\.[A-Za-z0-9]+)?$"))


def remove_dead_temporaries(folder: str, pattern: "re.Pattern[str]") -> List[str]:
    """Remove the entries of ``folder`` whose name matches ``pattern`` (a ``pid`` group) and whose
    writer process is gone (not alive, not this one). Files and folders alike.

    Returns:
        The removed paths.
    """
    removed: List[str] = []
    me = os.getpid()
    for name in sorted(os.listdir(folder)):
        m = pattern.match(name)
        if m is None:
            continue
        pid = int(m.group("pid"))
        if pid == me or pid_alive(pid):
            continue
        victim = os.path.join(folder, name)
        try:
            if os.path.isdir(victim) and not os.path.islink(victim):
                shutil.rmtree(victim)
            else:
                os.remove(victim)
        except FileNotFoundError:
            continue
        except OSError as err:  # read-only folder etc.: not this run's business to fail over it
            logger.warning("could not remove stale temporary file %s: %s", victim, err)
            continue
        removed.append(victim)
    if removed:
        logger.info("removed %d stale temporary file(s) of killed runs: %s", len(removed), ", ".join(removed))
    return removed
