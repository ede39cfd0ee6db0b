"""The package's dependency rules (docs/interfaces.md, "Module map"), checked on the source.

Every ``.py`` under ``megatron_prealign/`` is parsed with :mod:`ast` (no import runs) and each
``import``/``from ... import`` statement, at module level or inside a function, is checked
against the rules below. A violation reads ``file:line imports X``.

``KNOWN_VIOLATIONS`` lists the files that break a rule on purpose for now: each entry is being
removed by a parallel branch of issue 12 (r12-cli: argparse moves into ``megatron_prealign/cli/``;
r12-data: the corpus reader and the En-Clone dataset pass move into ``data/``). The lead empties
it at merge; an entry that no longer violates fails the test, so the list cannot go stale.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "megatron_prealign"


@dataclass(frozen=True)
class Rule:
    """Files under ``sources`` (package-relative folders; ``""`` = the whole package) but not
    under ``exempt_sources`` must not import modules under ``forbidden`` (dotted prefixes)
    unless they are also under ``allowed``."""

    name: str
    sources: Tuple[str, ...]
    forbidden: Tuple[str, ...]
    allowed: Tuple[str, ...] = ()
    exempt_sources: Tuple[str, ...] = ()


RULES = (
    # The platform layer is the bottom: it knows devices, processes and files, nothing of ours.
    Rule("platform imports nothing of ours", ("platform",), (PACKAGE,), allowed=(f"{PACKAGE}.platform",)),
    Rule("model never imports data or training", ("model",), (f"{PACKAGE}.data", f"{PACKAGE}.training")),
    Rule("eval and export never import the CLI or the training job", ("eval", "export"),
         (f"{PACKAGE}.cli", f"{PACKAGE}.training.arguments", f"{PACKAGE}.training.pretrain")),
    Rule("export never imports eval", ("export",), (f"{PACKAGE}.eval",)),
    Rule("tokenizer imports nothing from data, eval or training", ("tokenizer",),
         (f"{PACKAGE}.data", f"{PACKAGE}.eval", f"{PACKAGE}.training")),
    Rule("only the CLI layer imports argparse", ("",), ("argparse",), exempt_sources=("cli",)),
)

# Files that may break a rule for a stated reason (not a to-do).
EXEMPT: Dict[Tuple[str, str], str] = {
    ("only the CLI layer imports argparse", "megatron_prealign/training/checkpointing.py"):
        "Megatron-LM's common.pt stores its args as an argparse.Namespace: a data format, not a CLI",
}

# To-dos of the parallel issue-12 branches; the lead empties this at merge (see the docstring).
KNOWN_VIOLATIONS: Dict[str, FrozenSet[str]] = {
}


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> Iterator[Tuple[int, str, List[str]]]:
    """``(line, module, candidates)`` for every import statement in ``path``.

    ``candidates`` are the dotted names the statement may load: ``import a.b`` -> ``a.b``;
    ``from a import b, c`` -> ``a.b``, ``a.c`` (each may be a submodule or a name in ``a``).
    Relative imports are resolved against ``root``.
    """
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, [alias.name]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                parts = package.split(".")
                target = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" for a in node.names if a.name != "*"]
            yield node.lineno, target, names or [target]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(root: Path, rule: Rule) -> List[Tuple[str, str]]:
    """``(package-relative file, "file:line imports X")`` for every import breaking ``rule``.

    Args:
        root: the folder holding the ``megatron_prealign`` package.
        rule: the rule to check.
    """
    found = []
    for folder in rule.sources:
        for path in sorted((root / PACKAGE / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if any(path.is_relative_to(root / PACKAGE / ex) for ex in rule.exempt_sources):
                continue
            for line, module, candidates in imports_of(root, path):
                bad = [c for c in candidates if any(_under(c, p) for p in rule.forbidden)
                       and not any(_under(c, a) for a in rule.allowed)]
                if bad:
                    # Name the module of ``from m import x`` when m itself is forbidden, else what is loaded.
                    named = module if module != PACKAGE and any(_under(module, p) for p in rule.forbidden) else bad[0]
                    found.append((rel, f"{rel}:{line} imports {named}"))
    return found


def check(root: Path, rule: Rule) -> None:
    """Fail, listing every ``file:line imports X``, on a violation not known or exempt; fail on
    a known violation that is gone."""
    known = KNOWN_VIOLATIONS.get(rule.name, frozenset())
    found = [(rel, msg) for rel, msg in violations(root, rule) if (rule.name, rel) not in EXEMPT]
    new = [msg for rel, msg in found if rel not in known]
    assert not new, f"{rule.name}:\n" + "\n".join(new)
    stale = sorted(known - {rel for rel, _ in found})
    assert not stale, f"{rule.name}: no longer violated, remove from KNOWN_VIOLATIONS: {', '.join(stale)}"


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_dependency_rule(rule):
    check(REPO, rule)


def test_every_rule_folder_exists():
    for rule in RULES:
        for folder in rule.sources:
            assert (REPO / PACKAGE / folder).is_dir(), f"{rule.name}: {PACKAGE}/{folder} does not exist"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    for parent in path.relative_to(root).parents:
        if parent != Path(".") and not (root / parent / "__init__.py").exists():
            (root / parent / "__init__.py").write_text("", encoding="utf-8")


def test_planted_violations_are_reported_with_file_and_line(tmp_path):
    """A fake package breaking every rule once: each is found, naming file, line and module."""
    _write(tmp_path, "megatron_prealign/platform/a.py", "import os\nfrom megatron_prealign.data import readers\n")
    _write(tmp_path, "megatron_prealign/platform/ok.py",
           "from megatron_prealign.platform.a import x\nfrom . import a\nfrom megatron_prealign import platform\n")
    _write(tmp_path, "megatron_prealign/model/b.py", "def f():\n    import megatron_prealign.training.loop\n")
    _write(tmp_path, "megatron_prealign/eval/c.py", "from megatron_prealign.training import arguments\n")
    _write(tmp_path, "megatron_prealign/eval/d.py", "from ..cli import common\n")
    _write(tmp_path, "megatron_prealign/export/e.py", "x = 1\nfrom megatron_prealign.eval.loading import read_meta\n")
    _write(tmp_path, "megatron_prealign/tokenizer/f.py", "from megatron_prealign import data\n")
    _write(tmp_path, "megatron_prealign/data/g.py", "\n\nimport argparse\n")
    _write(tmp_path, "megatron_prealign/cli/h.py", "import argparse\nfrom megatron_prealign.training import pretrain\n")
    got = {rule.name: [msg for _, msg in violations(tmp_path, rule)] for rule in RULES}
    assert got == {
        "platform imports nothing of ours": ["megatron_prealign/platform/a.py:2 imports megatron_prealign.data"],
        "model never imports data or training": ["megatron_prealign/model/b.py:2 imports megatron_prealign.training.loop"],
        "eval and export never import the CLI or the training job": [
            "megatron_prealign/eval/c.py:1 imports megatron_prealign.training.arguments",
            "megatron_prealign/eval/d.py:1 imports megatron_prealign.cli",
        ],
        "export never imports eval": ["megatron_prealign/export/e.py:2 imports megatron_prealign.eval.loading"],
        "tokenizer imports nothing from data, eval or training": [
            "megatron_prealign/tokenizer/f.py:1 imports megatron_prealign.data"],
        "only the CLI layer imports argparse": ["megatron_prealign/data/g.py:3 imports argparse"],
    }
    for rule in RULES:  # what test_dependency_rule runs fails on each
        with pytest.raises(AssertionError, match=rf"^{re.escape(rule.name)}:\s+{re.escape(got[rule.name][0])}"):
            check(tmp_path, rule)


def test_relative_imports_resolve_to_the_package(tmp_path):
    _write(tmp_path, "megatron_prealign/model/sub/x.py", "from ...training import loop\nfrom .y import z\n")
    got = [(m, c) for _, m, c in imports_of(tmp_path, tmp_path / "megatron_prealign/model/sub/x.py")]
    assert got == [("megatron_prealign.training", ["megatron_prealign.training.loop"]),
                   ("megatron_prealign.model.sub.y", ["megatron_prealign.model.sub.y.z"])]


def test_public_names_exist_and_dataclass_annotations_resolve():
    """Every module's ``__all__`` names what it defines (``from m import *`` works) and every
    dataclass's annotations resolve (``typing.get_type_hints``, as config tooling calls it)."""
    import dataclasses
    import importlib
    import pkgutil
    import typing

    import megatron_prealign

    problems = []
    for info in pkgutil.walk_packages(megatron_prealign.__path__, PACKAGE + "."):
        module = importlib.import_module(info.name)
        problems += [f"{info.name}.__all__ lists {n!r}" for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
        for name, obj in vars(module).items():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == info.name:
                try:
                    typing.get_type_hints(obj)
                except Exception as exc:  # NameError: a name used in an annotation is not imported
                    problems.append(f"{info.name}.{name}: {type(exc).__name__}: {exc}")
    assert problems == []
