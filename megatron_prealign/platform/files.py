"""Writing files so that a reader never sees half of one: the one owner of "temporary name, then rename".

Every output of the project (tables, datasets, checkpoints' trackers, results, reports) is
written under ``{path}.tmp-<pid>`` in the destination folder and renamed over ``path`` only when
complete; a writer killed half-way (``kill -9``) leaves a temporary that the next writer of the
same path removes (:func:`~megatron_prealign.platform.process.remove_stale_temp_files`).

* :func:`atomic_path` -- a temporary *path* for writers that need one (``np.save``,
  ``torch.save``, a tool writing a folder), renamed on success.
* :func:`atomic_paths` -- several files that must appear together (``.bin`` + ``.idx``): all are
  renamed after all are written.
* :func:`atomic_open` -- an open text/binary file handle, renamed on close.
* :func:`write_text_atomic`, :func:`write_json_atomic` -- the common cases.
* :func:`file_sha256` -- the content hash recorded beside outputs (tokenizer files, tables).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from typing import Any, Iterator, List, Sequence

from megatron_prealign.platform.process import remove_stale_temp_files, temp_name

__all__ = ["atomic_open", "atomic_path", "atomic_paths", "file_sha256", "write_json_atomic", "write_text_atomic"]


def _discard(tmp: str) -> None:
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.lexists(tmp):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str]) -> Iterator[List[str]]:
    """Temporary paths for ``paths``, renamed over them (in order) when the block succeeds.

    The destination folders are created; temporaries of dead writers of the same paths are
    removed first. On an exception every temporary is removed and no destination is touched.

    Args:
        paths: destination files (or folders).

    Yields:
        One temporary path per destination (``{path}.tmp-<pid>``; same folder, so the rename is
        atomic on one filesystem).
    """
    tmps = []
    for path in paths:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        remove_stale_temp_files(path)
        tmps.append(temp_name(path))
    try:
        yield list(tmps)
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    except BaseException:
        for tmp in tmps:
            _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path renamed over ``path`` when the block succeeds (see :func:`atomic_paths`)."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str = "utf-8") -> Iterator[Any]:
    """``open()`` a temporary of ``path``; renamed over ``path`` when the block succeeds.

    Args:
        path: destination file.
        mode: ``"w"`` (text, ``encoding``) or ``"wb"``.
        encoding: text encoding (ignored for binary modes).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode {mode!r}: expected 'w' or 'wb'")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": encoding})) as fh:
            yield fh


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path) as fh:
        fh.write(text)


def write_json_atomic(path: str, payload: Any, indent: int = 2) -> None:
    """Write ``payload`` as JSON (UTF-8, non-ASCII kept, trailing newline) to ``path`` atomically."""
    with atomic_open(path) as fh:
        json.dump(payload, fh, ensure_ascii=False, indent=indent)
        fh.write("\n")


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
