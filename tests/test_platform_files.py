"""platform/files.py: outputs appear whole or not at all."""

import hashlib
import json
import os

import pytest

from megatron_prealign.platform.files import (atomic_open, atomic_path, atomic_paths, file_sha256, write_json_atomic,
                                              write_text_atomic)


def test_atomic_open_replaces_only_on_success(tmp_path):
    out = tmp_path / "sub" / "a.txt"
    write_text_atomic(str(out), "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(str(out)) as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert out.read_text() == "old\n"
    assert sorted(os.listdir(out.parent)) == ["a.txt"]  # no temporary left behind
    with atomic_open(str(out), "wb") as fh:
        fh.write(b"new")
    assert out.read_bytes() == b"new"


def test_atomic_paths_rename_together(tmp_path):
    bin_, idx = str(tmp_path / "d.bin"), str(tmp_path / "d.idx")
    with pytest.raises(ValueError):
        with atomic_paths([bin_, idx]) as (tb, ti):
            open(tb, "wb").write(b"x")
            raise ValueError("second file failed")
    assert os.listdir(tmp_path) == []
    with atomic_paths([bin_, idx]) as (tb, ti):
        open(tb, "wb").write(b"b")
        open(ti, "wb").write(b"i")
        assert not os.path.exists(bin_)  # nothing visible before the block ends
    assert open(bin_, "rb").read() == b"b" and open(idx, "rb").read() == b"i"


def test_atomic_path_removes_dead_writers_temporaries(tmp_path):
    out = tmp_path / "r.json"
    dead = tmp_path / "r.json.tmp-999999999"  # no such pid
    dead.write_text("{")
    with atomic_path(str(out)) as tmp:
        assert tmp.startswith(str(out) + ".tmp-")
        open(tmp, "w").write("{}")
    assert not dead.exists() and out.read_text() == "{}"


def test_write_json_and_sha256(tmp_path):
    out = tmp_path / "x.json"
    write_json_atomic(str(out), {"é": [1, 2]})
    assert json.loads(out.read_text(encoding="utf-8")) == {"é": [1, 2]}
    assert "é" in out.read_text(encoding="utf-8")
    assert file_sha256(str(out)) == hashlib.sha256(out.read_bytes()).hexdigest()
