"""The one skeleton of every ``tools/*.py``: ``main(argv) -> int`` with one error path.

Usage::

    @tool_main("make_en_clone.py")
    def main(argv: List[str]) -> int:
        args = build_parser().parse_args(argv)
        ...                      # raise OSError/ValueError/RuntimeError naming the file/line/flag
        return 0

    if __name__ == "__main__":
        sys.exit(main())

Bad flags exit through argparse (usage + ``prog: error: ...``, status 2); a user error raised
by the body prints ``prog: error: <its first line>`` and returns 2 (``--debug`` re-raises it
with its traceback); Ctrl-C returns 130. Outputs are written under temporary names and renamed
(:mod:`megatron_prealign.platform.files`), so an error leaves nothing half-written.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, List, Optional

from megatron_prealign.platform.errors import error_line

__all__ = ["USER_ERRORS", "tool_main"]

USER_ERRORS = (OSError, ValueError, RuntimeError)
"""What a tool reports as a one-line error (bad files, bad values, failed passes)."""


def tool_main(prog: str) -> Callable[[Callable[[List[str]], Optional[int]]], Callable[..., int]]:
    """Wrap a tool body ``body(argv) -> status`` into ``main(argv=None) -> int``.

    Args:
        prog: the tool's file name, the prefix of its error lines.
    """
    def wrap(body: Callable[[List[str]], Optional[int]]) -> Callable[..., int]:
        @functools.wraps(body)
        def main(argv: Optional[List[str]] = None) -> int:
            argv = sys.argv[1:] if argv is None else list(argv)
            try:
                return int(body(argv) or 0)
            except KeyboardInterrupt:
                print(f"{prog}: interrupted; no output written", file=sys.stderr, flush=True)
                return 130
            except USER_ERRORS as exc:
                if "--debug" in argv:
                    raise
                print(f"{prog}: error: {error_line(exc)}", file=sys.stderr, flush=True)
                return 2
        return main
    return wrap
