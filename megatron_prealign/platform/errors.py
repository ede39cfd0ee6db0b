"""The one-line form of an exception, for errors that name a file, line or flag."""

__all__ = ["error_line"]


def error_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
