"""Flags generated from config dataclasses, and the namespace turned back into them.

A field becomes a flag when its ``metadata`` names one (Megatron-LM's spelling where it exists)::

    lr: float = field(default=1e-4, metadata={"flag": "--lr", "required": True})
    '''Peak learning rate.'''

The help text is the field's attribute docstring (read once per class with :mod:`ast`). The type comes from the annotation (``Optional[X]`` -> ``X``,
``List[X]`` -> ``nargs="+"``); a ``bool`` is a switch (``store_true``; ``store_false`` when its
flag starts with ``--no-``; both spellings with ``"negatable": True``). Other metadata keys
(``choices``, ``default``, ``nargs``, ``metavar``, ``required``, ``aliases``, ``dest``, and
``type`` for a value given as text, e.g. ``"all"`` or ``"0,3"``) go to
``add_argument``; ``"default"`` there is the command line's default when it differs from the
field's (e.g. ``None``: "not given"). A field whose type is a dataclass is recursed into.
"""

from __future__ import annotations

import argparse
import ast
import collections.abc
import dataclasses
import functools
import inspect
import textwrap
import typing
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

__all__ = ["flag_fields", "field_docs", "add_flags", "from_args", "dest"]

_ARGPARSE_KEYS = ("choices", "nargs", "metavar", "required")


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> Dict[str, str]:
    """``{field name: docstring}`` of a dataclass (the string literal after each field)."""
    docs: Dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def flag_fields(cls: type, only: Optional[Sequence[str]] = None
                ) -> Iterator[Tuple[type, dataclasses.Field, Any]]:
    """``(owner class, field, resolved type)`` of every flag-carrying field, nested ones included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from flag_fields(tp, only)
        elif "flag" in f.metadata and (only is None or f.name in only):
            yield cls, f, tp


def dest(f: dataclasses.Field) -> str:
    """The namespace attribute of a field's flag: argparse's rule, without a ``--no-`` prefix
    (``--no-load-optim`` -> ``load_optim``, True unless given), or metadata ``dest``."""
    return f.metadata.get("dest") or f.metadata["flag"].removeprefix("--no-").lstrip("-").replace("-", "_")


def _scalar(tp: Any) -> Tuple[Any, bool]:
    """``(element type, is a list)`` of ``X``, ``Optional[X]``, ``List[X]``, ``Optional[List[X]]``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union:
        return _scalar(args[0])
    if typing.get_origin(tp) in (list, tuple, collections.abc.Sequence):
        return args[0] if args else str, True
    return tp, False


def _default(f: dataclasses.Field) -> Any:
    if "default" in f.metadata:
        return f.metadata["default"]
    if f.default is not dataclasses.MISSING:
        return f.default
    return None


def add_flags(parser: Any, cls: type, only: Optional[Sequence[str]] = None, **overrides: Dict[str, Any]) -> None:
    """Add one flag per flag-carrying field of ``cls`` (help = the field's docstring).

    Args:
        parser: an ``ArgumentParser`` or argument group.
        cls: the dataclass.
        only: field names to add (default all).
        **overrides: ``add_argument`` keywords by field name (e.g. ``default``, ``required``),
            over those the field implies.
    """
    for owner, f, tp in flag_fields(cls, only):
        meta = f.metadata
        kw: Dict[str, Any] = {k: meta[k] for k in _ARGPARSE_KEYS if k in meta}
        kw["default"] = _default(f)
        kw["help"] = field_docs(owner).get(f.name, "").replace("%", "%%") or None
        names = [meta["flag"], *meta.get("aliases", ())]
        elem, is_list = (meta["type"], False) if "type" in meta else _scalar(tp)
        if elem is bool:
            kw["action"] = (argparse.BooleanOptionalAction if meta.get("negatable")
                            else "store_false" if meta["flag"].startswith("--no-") else "store_true")
        else:
            kw["type"] = elem
            if "choices" not in kw:
                kw.setdefault("metavar", meta["flag"].lstrip("-").replace("-", "_").upper())
            if is_list:
                kw.setdefault("nargs", "+")
        kw.update(overrides.get(f.name, {}))
        parser.add_argument(*names, dest=dest(f), **kw)


def from_args(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """Build ``cls`` from the flags of its fields (nested dataclasses too) plus ``given`` values.

    A field without a flag, and not in ``given``, keeps its default; ``given`` overrides flags
    (values the command line implies rather than states, e.g. the padded vocabulary); for a
    nested dataclass it is a dict of that class's given values.
    """
    hints = typing.get_type_hints(cls)
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = from_args(hints[f.name], args, **given.get(f.name, {}))
        elif f.name in given:
            kwargs[f.name] = given[f.name]
        elif "flag" in f.metadata and hasattr(args, dest(f)):
            value = getattr(args, dest(f))
            kwargs[f.name] = list(value) if isinstance(value, tuple) else value
    return cls(**kwargs)
