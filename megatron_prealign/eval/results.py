"""Writing evaluation results: atomic JSON files and readable fixed-width tables."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence


RESULT_SCHEMA_VERSION = 1


def format_value(value: Any, digits: int = 2) -> str:
    """Format one table cell: floats with ``digits`` decimals, ``None``/NaN as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 2) -> str:
    """A plain fixed-width text table (for stdout).

    Args:
        headers: column names.
        rows: one sequence of cells per row.
        digits: decimals for float cells.
    """
    cells: List[List[str]] = [[str(h) for h in headers]]
    cells += [[format_value(c, digits) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if n else c.ljust(w) for c, w in zip(row, widths))
             for n, row in enumerate(cells)]
    lines.insert(1, "  ".join("-" * w for w in widths))  # under the header
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 1) -> str:
    """A GitHub Markdown table."""
    out = ["| " + " | ".join(str(h) for h in headers) + " |"]
    out.append("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        out.append("| " + " | ".join(format_value(c, digits) for c in row) + " |")
    return "\n".join(out)


def result_header(task: str, checkpoint: Optional[Dict[str, Any]] = None, **extra: Any) -> Dict[str, Any]:
    """Common top-level fields of every result JSON (task name, checkpoint, settings)."""
    out: Dict[str, Any] = {"schema_version": RESULT_SCHEMA_VERSION, "task": task}
    if checkpoint is not None:
        out["checkpoint"] = checkpoint
    out.update(extra)
    return out
