"""Every tool has the one skeleton (``main(argv) -> int`` through ``cli.tool.tool_main``), one
table flag and ``--workers`` meaning processes; the skeleton's error path itself."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from megatron_prealign.cli.tool import tool_main

TOOLS = sorted((pathlib.Path(__file__).resolve().parents[1] / "tools").glob("*.py"))


def test_there_are_fourteen_tools():
    assert len(TOOLS) == 14


@pytest.mark.parametrize("path", TOOLS, ids=lambda p: p.name)
def test_tool_skeleton(path):
    tree = ast.parse(path.read_text())
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert len(mains) == 1, path.name
    deco = mains[0].decorator_list
    assert len(deco) == 1 and ast.unparse(deco[0]) == f"tool_main('{path.name}')", path.name
    guard = tree.body[-1]
    assert isinstance(guard, ast.If) and ast.unparse(guard.test) == "__name__ == '__main__'", path.name
    assert [ast.unparse(s) for s in guard.body] == ["sys.exit(main())"], path.name
    # no second error path next to the skeleton's
    assert "sys.exit(f" not in path.read_text() and "parser.exit(" not in path.read_text(), path.name


@pytest.mark.parametrize("path", TOOLS, ids=lambda p: p.name)
def test_one_table_flag_and_workers_are_processes(path):
    text = path.read_text()
    for call in re.findall(r"add_argument\((.*?)\)\n", text, re.S):
        if '"--prealign-table"' in call:
            assert call.lstrip().startswith('\n        "--alignment-table", "--prealign-table"') or \
                call.lstrip().startswith('"--alignment-table", "--prealign-table"'), (path.name, call)
        if call.lstrip().startswith('"--workers"'):
            assert re.search(r"[Pp]rocess", call), (path.name, call)


def _tool(body):
    return tool_main("t.py")(body)


def test_errors_are_one_line_with_status_2(capsys):
    def body(argv):
        raise ValueError("data.jsonl:3: bad record\n(more detail)")

    assert _tool(body)([]) == 2
    assert capsys.readouterr().err == "t.py: error: data.jsonl:3: bad record\n"
    with pytest.raises(ValueError, match="bad record"):  # --debug: the traceback
        _tool(body)(["--debug"])


def test_ctrl_c_is_130_and_success_is_0(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert _tool(interrupted)([]) == 130
    assert capsys.readouterr().err == "t.py: interrupted; no output written\n"
    assert _tool(lambda argv: None)(["x"]) == 0
    assert _tool(lambda argv: len(argv))(["a", "b", "c"]) == 3  # the body's own status


def test_bad_flags_still_exit_through_argparse():
    import argparse

    def body(argv):
        argparse.ArgumentParser(prog="t.py").parse_args(argv)

    with pytest.raises(SystemExit) as exit_:
        _tool(body)(["--nope"])
    assert exit_.value.code == 2
