"""Flags are generated from the config dataclasses: every flag is a field, every field's flag is
in ``--help`` with its docstring, and a flag without a field (or the reverse) is caught."""

from __future__ import annotations

import argparse
import dataclasses
from typing import List, Sequence, Set, Tuple

import pytest

from megatron_prealign.cli.flags import field_docs, flag_fields, from_args
from megatron_prealign.cli.pretrain import FLAG_GROUPS, NOOP_FLAGS, NOOP_VALUE_FLAGS, build_parser
from megatron_prealign.cli.tokenizer import TokenizerArgs

CLASSES = [cls for _, cls in FLAG_GROUPS] + [TokenizerArgs]


def field_flags(classes: Sequence[type]) -> Set[str]:
    """Every flag (and alias) the fields of ``classes`` declare."""
    out = set()
    for cls in classes:
        for _, f, _ in flag_fields(cls):
            out.add(f.metadata["flag"])
            out.update(f.metadata.get("aliases", ()))
    return out


def parser_flags(parser: argparse.ArgumentParser) -> Set[str]:
    """Every option string of ``parser`` except ``-h`` and the declared no-op flags."""
    flags = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    negated = {"--no-" + s[2:] for s in flags if any(isinstance(a, argparse.BooleanOptionalAction)
                                                     and s in a.option_strings for a in parser._actions)}
    return flags - {"--help"} - set(NOOP_FLAGS) - set(NOOP_VALUE_FLAGS) - negated


def mismatches(parser: argparse.ArgumentParser, classes: Sequence[type]) -> Tuple[List[str], List[str]]:
    """``(flags without a field, fields' flags missing from the parser)``."""
    have, declared = parser_flags(parser), field_flags(classes)
    return sorted(have - declared), sorted(declared - have)


def help_text(parser: argparse.ArgumentParser, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100000")  # one line per flag: docstrings compare verbatim
    return " ".join(parser.format_help().split())


def missing_docs(parser: argparse.ArgumentParser, classes: Sequence[type], monkeypatch) -> List[str]:
    """Flags whose field has no docstring or whose docstring is not their help."""
    text, out = help_text(parser, monkeypatch), []
    for cls in classes:
        for owner, f, _ in flag_fields(cls):
            doc = field_docs(owner).get(f.name)
            if not doc or doc not in text or f.metadata["flag"] not in text:
                out.append(f.metadata["flag"])
    return out


def test_every_flag_is_a_field_and_every_field_a_flag():
    assert mismatches(build_parser(), CLASSES) == ([], [])


def test_every_field_flag_is_in_help_with_its_docstring(monkeypatch):
    assert missing_docs(build_parser(), CLASSES, monkeypatch) == []
    # spot checks against the source text: the docstring is the help, not a second copy
    text = help_text(build_parser(), monkeypatch)
    assert "--prealign-temperature PREALIGN_TEMPERATURE SupCon temperature tau of the alignment loss (> 0)." in text
    assert "--alignment-table ALIGNMENT_TABLE, --prealign-table ALIGNMENT_TABLE" in text


def test_a_flag_without_a_field_fails_the_check():
    parser = build_parser()
    parser.add_argument("--stray-flag", type=int, default=0, help="not generated from any dataclass")
    assert mismatches(parser, CLASSES) == (["--stray-flag"], [])


def test_a_field_without_a_flag_fails_the_check(monkeypatch):
    @dataclasses.dataclass
    class Extra:
        knob: int = dataclasses.field(default=1, metadata={"flag": "--knob"})
        """A knob nobody added to the parser."""

    assert mismatches(build_parser(), CLASSES + [Extra]) == ([], ["--knob"])
    assert missing_docs(build_parser(), [Extra], monkeypatch) == ["--knob"]


def test_a_field_without_docstring_fails_the_help_check(monkeypatch):
    @dataclasses.dataclass
    class Undocumented:
        knob: int = dataclasses.field(default=1, metadata={"flag": "--knob"})

    parser = argparse.ArgumentParser()
    parser.add_argument("--knob")
    assert missing_docs(parser, [Undocumented], monkeypatch) == ["--knob"]


def test_nested_loss_config_is_parsed_once_and_passed_down():
    """``--prealign-*`` loss flags land in ``PreAlignConfig.loss`` (one object, checked once)."""
    from megatron_prealign.model.prealign import PreAlignLossConfig
    from megatron_prealign.training.config import PreAlignConfig

    args = build_parser().parse_args(
        "--micro-batch-size 1 --lr 1 --prealign-mode on-the-fly --prealign-table t "
        "--prealign-temperature 0.3 --prealign-levels 2,0 --prealign-align-weight 0.5".split())
    cfg = from_args(PreAlignConfig, args)
    assert cfg.loss == PreAlignLossConfig(temperature=0.3, levels=[0, 2], align_weight=0.5)
    assert cfg.table == "t"  # the old spelling is an alias of --alignment-table
    args.prealign_temperature = 0.0
    with pytest.raises(ValueError, match="--prealign-temperature must be > 0"):
        from_args(PreAlignConfig, args)
