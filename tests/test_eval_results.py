"""Result table formatting (atomic JSON writing: tests/test_platform_files.py)."""

import math

from megatron_prealign.eval import results


def test_tables():
    txt = results.format_table(["lang", "ppl"], [["en", 16.123], ["de", None], ["zh", math.nan]]).splitlines()
    assert txt[0].split() == ["lang", "ppl"] and txt[2].split() == ["en", "16.12"] and txt[3].split() == ["de", "-"]
    md = results.markdown_table(["a", "b"], [["x", 1.25], ["y", 3]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x | 1.2 |", "| y | 3 |"]
    assert results.result_header("clka", {"iteration": 3}, period=None) == {
        "schema_version": 1, "task": "clka", "checkpoint": {"iteration": 3}, "period": None}
