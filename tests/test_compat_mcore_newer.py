"""Our use of megatron-core's API against the installed release and the newest one ``<0.21``.

The newer release cannot be imported on Python 3.11 (it needs 3.12, and from 0.19 ``triton``),
so its *source* is checked statically: every ``from megatron.core... import name`` in the
package, tools and entry point must resolve, and every keyword we pass to the megatron-core
configs and constructors we build (``TransformerConfig``, ``OptimizerConfig``,
``DistributedDataParallelConfig``, ``OptimizerParamScheduler``, ...) must still be a field or
parameter. The wheel is fetched once with ``pip download`` into a cache
(``$MCORE_NEWER_CACHE``, default ``~/.cache/megatron-prealign/mcore-newer``); set
``MCORE_NEWER_SRC`` to an unpacked wheel to skip the download. Without PyPI the newer-release
test is skipped with the reason; the installed-release test always runs.
"""

from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
OUR_SOURCES = [REPO / "megatron_prealign", REPO / "tools", REPO / "pretrain_prealign.py"]

# Constructors whose keywords we check -> (module path, class or function, base classes to merge)
CHECKED_CALLS: Dict[str, Tuple[str, str, Tuple[Tuple[str, str], ...]]] = {
    "TransformerConfig": ("megatron/core/transformer/transformer_config.py", "TransformerConfig",
                          (("megatron/core/model_parallel_config.py", "ModelParallelConfig"),)),
    "OptimizerConfig": ("megatron/core/optimizer/optimizer_config.py", "OptimizerConfig", ()),
    "DistributedDataParallelConfig": ("megatron/core/distributed/distributed_data_parallel_config.py",
                                      "DistributedDataParallelConfig", ()),
    "GPTDatasetConfig": ("megatron/core/datasets/gpt_dataset.py", "GPTDatasetConfig",
                         (("megatron/core/datasets/blended_megatron_dataset_config.py",
                           "BlendedMegatronDatasetConfig"),)),
    "OptimizerParamScheduler": ("megatron/core/optimizer_param_scheduler.py", "OptimizerParamScheduler", ()),
    "GPTModel": ("megatron/core/models/gpt/gpt_model.py", "GPTModel", ()),
    "DistributedDataParallel": ("megatron/core/distributed/distributed_data_parallel.py",
                                "DistributedDataParallel", ()),
}


def _rel(f: Path) -> str:
    return str(f.relative_to(REPO)) if f.is_relative_to(REPO) else str(f)


def _py_files(paths: List[Path]) -> List[Path]:
    out: List[Path] = []
    for p in paths:
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def _fallback_imports(tree: ast.AST) -> Set[int]:
    """ids of ImportFrom nodes inside ``except`` handlers (version fallbacks, may be absent)."""
    ids: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom):
                    ids.add(id(sub))
    return ids


def our_mcore_imports(paths: List[Path]) -> List[Tuple[str, str, str]]:
    """``(module, name, where)`` of every non-fallback ``from megatron.core... import name``."""
    out = []
    for f in _py_files(paths):
        tree = ast.parse(f.read_text(), str(f))
        skip = _fallback_imports(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom) and id(node) not in skip and node.module
                    and node.module.split(".")[:2] == ["megatron", "core"]):
                for alias in node.names:
                    out.append((node.module, alias.name, f"{_rel(f)}:{node.lineno}"))
    return out


def our_call_keywords(paths: List[Path]) -> Dict[str, Set[Tuple[str, str]]]:
    """Keywords we pass to each constructor of :data:`CHECKED_CALLS`: ``{name: {(kw, where)}}``."""
    out: Dict[str, Set[Tuple[str, str]]] = {k: set() for k in CHECKED_CALLS}
    for f in _py_files(paths):
        tree = ast.parse(f.read_text(), str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
                if name in out:
                    for kw in node.keywords:
                        if kw.arg:
                            out[name].add((kw.arg, f"{_rel(f)}:{node.lineno}"))
    return out


def _module_file(root: Path, module: str) -> Optional[Path]:
    base = root.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _defined_names(path: Path) -> Set[str]:
    tree = ast.parse(path.read_text())
    names: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _class_params(root: Path, rel: str, cls: str) -> Set[str]:
    """Dataclass fields plus ``__init__`` parameters of ``cls`` in ``root/rel``."""
    tree = ast.parse((root / rel).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            params = {m.target.id for m in node.body if isinstance(m, ast.AnnAssign) and isinstance(m.target, ast.Name)}
            for m in node.body:
                if isinstance(m, ast.FunctionDef) and m.name == "__init__":
                    a = m.args
                    params.update(x.arg for x in a.posonlyargs + a.args + a.kwonlyargs)
            return params
    raise AssertionError(f"{cls} not found in {rel}")


def api_problems(root: Path, paths: List[Path] = OUR_SOURCES) -> List[str]:
    """Everything our code uses that ``root`` (a megatron-core source tree) lacks."""
    problems = []
    for module, name, where in our_mcore_imports(paths):
        f = _module_file(root, module)
        if f is None:
            problems.append(f"{where}: module {module} is gone")
        elif name not in _defined_names(f) and _module_file(root, f"{module}.{name}") is None:
            problems.append(f"{where}: {module}.{name} is gone")
    for call, uses in our_call_keywords(paths).items():
        rel, cls, bases = CHECKED_CALLS[call]
        params = _class_params(root, rel, cls)
        for brel, bcls in bases:
            params |= _class_params(root, brel, bcls)
        for kw, where in sorted(uses):
            if kw not in params:
                problems.append(f"{where}: {call}({kw}=...) is no longer accepted")
    return problems


def _installed_root() -> Path:
    import megatron.core

    return Path(megatron.core.__file__).resolve().parents[2]


def _newer_root() -> Path:
    src = os.environ.get("MCORE_NEWER_SRC")
    if src:
        return Path(src)
    cache = Path(os.environ.get("MCORE_NEWER_CACHE", Path.home() / ".cache" / "megatron-prealign" / "mcore-newer"))
    done = sorted(cache.glob("*/megatron/core/package_info.py"))
    if done:
        return done[-1].parents[2]
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--python-version",
           "3.12", "--quiet", "-d", str(wheels), "megatron-core>0.16.1,<0.21"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except (subprocess.TimeoutExpired, OSError) as exc:
        pytest.skip(f"cannot download megatron-core <0.21 ({exc})")
    found = sorted(glob.glob(str(wheels / "megatron_core-*.whl")))
    if res.returncode != 0 or not found:
        pytest.skip(f"cannot download megatron-core <0.21: {res.stderr.strip().splitlines()[-1:]}")
    whl = found[-1]
    version = Path(whl).name.split("-")[1]
    dest = cache / version
    tmp = cache / f".{version}.tmp"
    with zipfile.ZipFile(whl) as z:
        z.extractall(tmp, [n for n in z.namelist() if n.startswith("megatron/core/") and n.endswith(".py")])
    os.replace(tmp, dest)  # whole tree or nothing, for the next run's cache check
    return dest


def test_api_use_resolves_in_installed_release():
    assert our_mcore_imports(OUR_SOURCES), "found no megatron.core imports: the scanner is broken"
    assert api_problems(_installed_root()) == []


def test_checker_flags_a_removed_name(tmp_path):
    """The scanner must report names and keywords a release lacks (else the tests prove nothing)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from megatron.core.optimizer import OptimizerConfig, no_such_function\n"
                   "OptimizerConfig(lr=1.0, no_such_field=2)\n")
    problems = api_problems(_installed_root(), [bad])
    assert any("no_such_function is gone" in p for p in problems), problems
    assert any("OptimizerConfig(no_such_field=...)" in p for p in problems), problems
    assert not any("OptimizerConfig is gone" in p or "lr=" in p for p in problems), problems


def test_api_use_resolves_in_newest_release_below_0_21():
    root = _newer_root()
    assert api_problems(root) == [], f"megatron-core from {root}"


def test_compat_version_helpers():
    from megatron_prealign.platform import compat

    assert compat._parse("0.19.0rc1") == (0, 19, 0)
    assert compat._parse("0.20") == (0, 20, 0)
    assert compat._parse(compat.SUPPORTED_RANGE[0]) <= compat.mcore_version() < compat._parse(compat.SUPPORTED_RANGE[1])
    assert compat.missing_runtime_dependencies("0.16.1") == []


def test_setup_py_range_matches_compat():
    from megatron_prealign.platform import compat

    text = (REPO / "setup.py").read_text()
    low, high = compat.SUPPORTED_RANGE
    assert f'"megatron-core>={low},<{high[:-2]}"' in text
