"""Streaming readers for pretraining corpora: JSONL (plain or gzip), CulturaX parquet, plain text.

The readers never load a whole file: JSONL and text are read line by line, parquet shards
(CulturaX: columns ``text``, ``timestamp``, ``url``, ``source``) by record batches within row
groups with pyarrow, so a 50 GB shard costs one row group of memory.

Reading is split in two so that the expensive half can run in worker processes:

* :class:`CorpusReader` (main process) expands ``--input`` (files, globs, directories), opens each
  file in turn and yields :class:`RawRecord` items: an *undecoded* JSONL or text line, or the
  already-extracted field values of a parquet row, each tagged with its ``file:line``.
* :func:`decode_record` (any process) turns a record into one value per ``--json-keys`` key,
  raising :class:`MalformedRecordError` (message ``path:line: why``) on bad JSON, bad UTF-8, a
  missing key or a non-string value.

Example::

    reader = CorpusReader(["data/en/*.parquet", "extra.jsonl.gz"], ReaderConfig(json_keys=("text",)))
    for record in reader:
        (text,) = decode_record(record, reader.config.json_keys)
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

__all__ = [
    "CorpusReader",
    "InputError",
    "MalformedRecordError",
    "RawRecord",
    "ReaderConfig",
    "decode_record",
    "detect_format",
    "expand_inputs",
]

FORMATS = ("jsonl", "parquet", "text")
"""Input formats understood by :class:`CorpusReader`."""

TEXT_UNITS = ("line", "paragraph", "file")
"""What one document is in a plain-text file: a line, a blank-line separated block, the file."""

# A JSON "\ud800" escape decodes to a lone surrogate: a str that no tokenizer can encode as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".txt": "text",
    ".text": "text",
}

# Record kinds (RawRecord.kind).
KIND_JSON = 0
"""``payload`` is one undecoded JSONL line (bytes)."""
KIND_TEXT = 1
"""``payload`` is one undecoded plain-text document (bytes); the key is ``text``."""
KIND_VALUES = 2
"""``payload`` is a tuple of field values, one per json key (parquet rows)."""


class InputError(ValueError):
    """A problem with the input files or the flags that select from them (one-line message)."""


class MalformedRecordError(InputError):
    """One record cannot be decoded; the message starts with ``path:line:``."""


class RawRecord(NamedTuple):
    """One input record, cheap to pickle to a worker process."""

    kind: int
    """One of ``KIND_JSON``, ``KIND_TEXT``, ``KIND_VALUES``."""
    payload: Union[bytes, Tuple[Any, ...]]
    """The undecoded line/block (bytes) or the field values (parquet)."""
    path: str
    """The file the record comes from."""
    lineno: int
    """1-based line number (JSONL, text: first line of the document) or row number (parquet)."""
    nbytes: int
    """Size of the record in the input (for MB/s); for parquet, the UTF-8 bytes of its fields."""

    @property
    def where(self) -> str:
        """``path:line`` (or ``path:row N`` for parquet) for error messages."""
        if self.kind == KIND_VALUES:
            return f"{self.path}:row {self.lineno}"
        return f"{self.path}:{self.lineno}"


@dataclass
class ReaderConfig:
    """How to read the input files."""

    json_keys: Tuple[str, ...] = ("text",)
    """Fields to extract from each record (Megatron ``--json-keys``): JSON keys or parquet
    columns. Plain text has one field, ``text``."""
    input_format: str = "auto"
    """``auto`` (from the file extension: .jsonl/.json/.ndjson[.gz], .parquet, .txt[.gz]),
    or one of ``jsonl``, ``parquet``, ``text`` for every input file."""
    text_unit: str = "line"
    """Plain text only: one document per ``line``, per blank-line separated ``paragraph``, or
    per ``file`` (the whole file is held in memory)."""
    parquet_batch_rows: int = 1024
    """Rows per pyarrow record batch when streaming parquet row groups."""

    def __post_init__(self) -> None:
        self.json_keys = tuple(self.json_keys)
        if not self.json_keys:
            raise InputError("--json-keys: at least one key is needed")
        if len(set(self.json_keys)) != len(self.json_keys):
            raise InputError(f"--json-keys: duplicate key in {list(self.json_keys)}")
        if self.input_format != "auto" and self.input_format not in FORMATS:
            raise InputError(f"--input-format: {self.input_format!r} is not one of auto, {', '.join(FORMATS)}")
        if self.text_unit not in TEXT_UNITS:
            raise InputError(f"--text-unit: {self.text_unit!r} is not one of {', '.join(TEXT_UNITS)}")
        if self.parquet_batch_rows < 1:
            raise InputError("parquet_batch_rows must be >= 1")


def _known_extension(path: str) -> Optional[str]:
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return _EXTENSIONS.get(os.path.splitext(name)[1])


def detect_format(path: str, input_format: str = "auto") -> str:
    """The reader format of ``path``: ``input_format`` unless it is ``auto``, else by extension.

    Raises:
        InputError: the extension is unknown and no format was given.
    """
    if input_format != "auto":
        return input_format
    fmt = _known_extension(path)
    if fmt is None:
        raise InputError(
            f"--input: cannot tell the format of {path} from its extension "
            f"(.jsonl/.json/.ndjson[.gz], .parquet, .txt[.gz]); pass --input-format"
        )
    return fmt


def expand_inputs(inputs: Sequence[str]) -> List[str]:
    """Expand ``--input`` values into an ordered, de-duplicated list of files.

    Each value is a file, a glob (``data/en_part_*.parquet``, ``**`` allowed; matches sorted) or
    a directory (its files with a known extension, sorted, not recursive).

    Raises:
        InputError: a value matches nothing or names a missing file.
    """
    files: List[str] = []
    for value in inputs:
        if glob.has_magic(value):
            matches = sorted(p for p in glob.glob(value, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"--input: no file matches {value!r}")
            files.extend(matches)
        elif os.path.isdir(value):
            matches = sorted(
                os.path.join(value, name)
                for name in os.listdir(value)
                if os.path.isfile(os.path.join(value, name)) and _known_extension(name)
            )
            if not matches:
                raise InputError(f"--input: directory {value} holds no .jsonl/.json/.parquet/.txt file")
            files.extend(matches)
        elif os.path.isfile(value):
            files.append(value)
        else:
            raise InputError(f"--input: no such file: {value}")
    unique: Dict[str, str] = {}  # absolute path -> the first spelling given
    for path in files:
        unique.setdefault(os.path.abspath(path), path)
    return list(unique.values())


def decode_record(record: RawRecord, json_keys: Sequence[str]) -> Tuple[Any, ...]:
    """Decode one record into one value per key.

    Values are ``str``, a ``list`` of ``str`` (Megatron's pre-split sentences; tokenized element
    by element and concatenated) or ``None`` (JSON ``null``, parquet null, or a blank JSONL
    line: an empty document).

    Raises:
        MalformedRecordError: invalid UTF-8 or JSON, a non-object line, a missing key, or a value
            that is not a string / list of strings. The message starts with ``path:line:``.
    """
    if record.kind == KIND_VALUES:
        return record.payload  # type: ignore[return-value]
    line = record.payload
    try:
        if record.kind == KIND_TEXT:
            return (line.decode("utf-8"),)  # type: ignore[union-attr]
        if not line.strip():  # type: ignore[union-attr]
            return tuple(None for _ in json_keys)
        data = json.loads(line)
    except UnicodeDecodeError as err:
        raise MalformedRecordError(f"{record.where}: invalid UTF-8 ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise MalformedRecordError(
            f"{record.where}: malformed JSON ({err.msg} at column {err.colno})"
        ) from None
    if not isinstance(data, dict):
        raise MalformedRecordError(f"{record.where}: a JSON object is expected, got {type(data).__name__}")
    values = []
    for key in json_keys:
        if key not in data:
            shown = ", ".join(sorted(data)[:10])
            raise MalformedRecordError(
                f"{record.where}: key {key!r} (--json-keys) not in the record (keys: {shown})"
            )
        value = data[key]
        if value is not None and not isinstance(value, str):
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise MalformedRecordError(
                    f"{record.where}: key {key!r} holds {type(value).__name__}, not a string"
                )
        if b"\\u" in line:  # type: ignore[operator]  # only escapes can produce surrogates
            _check_surrogates(value, record.where, key)
        values.append(value)
    return tuple(values)


def _check_surrogates(value: Any, where: str, key: str) -> None:
    for text in (value if isinstance(value, list) else [value]):
        if isinstance(text, str):
            m = _SURROGATE.search(text)
            if m is not None:
                raise MalformedRecordError(
                    f"{where}: key {key!r} holds a lone surrogate \\u{ord(m.group()):04x} at character {m.start()} "
                    f"(not valid Unicode text)"
                )


class _CountingFile(io.RawIOBase):
    """Wraps a binary file and counts bytes read (compressed position of a .gz)."""

    def __init__(self, raw: io.BufferedReader) -> None:
        self._raw = raw
        self.consumed = 0

    def readable(self) -> bool:  # noqa: D102
        return True

    def readinto(self, buffer) -> int:  # noqa: D102
        n = self._raw.readinto(buffer)
        self.consumed += n or 0
        return n

    def close(self) -> None:  # noqa: D102
        self._raw.close()
        super().close()


class CorpusReader:
    """Iterates over the records of all input files in order, streaming each file.

    Args:
        inputs: ``--input`` values (files, globs, directories); see :func:`expand_inputs`.
        config: reader options.

    Attributes:
        files: the expanded input files, in reading order.
        total_bytes: their summed on-disk size (for progress and ETA).
    """

    def __init__(self, inputs: Sequence[str], config: ReaderConfig) -> None:
        self.config = config
        self.files = expand_inputs(inputs)
        self.formats = [detect_format(p, config.input_format) for p in self.files]
        for path, fmt in zip(self.files, self.formats):
            if fmt == "text" and config.json_keys != ("text",):
                raise InputError(
                    f"--json-keys: plain-text input {path} has one field, 'text'; got {list(config.json_keys)}"
                )
            if fmt == "parquet":
                self._check_parquet_schema(path)
        self.sizes = [os.path.getsize(p) for p in self.files]
        self.total_bytes = sum(self.sizes)
        self._done_bytes = 0
        self._current_fraction = 0.0
        self._current_size = 0

    def progress(self) -> float:
        """Fraction of the input (by on-disk bytes) read so far, in [0, 1]."""
        if self.total_bytes == 0:
            return 1.0
        read = self._done_bytes + self._current_fraction * self._current_size
        return min(1.0, read / self.total_bytes)

    def __iter__(self) -> Iterator[RawRecord]:
        self._done_bytes = 0
        for path, fmt, size in zip(self.files, self.formats, self.sizes):
            self._current_size = size
            self._current_fraction = 0.0
            if fmt == "jsonl":
                yield from self._iter_lines(path, KIND_JSON, size)
            elif fmt == "text":
                if self.config.text_unit == "line":
                    yield from self._iter_lines(path, KIND_TEXT, size)
                else:
                    yield from self._iter_text_blocks(path, size)
            else:
                yield from self._iter_parquet(path)
            self._done_bytes += size
            self._current_fraction = 0.0
            self._current_size = 0

    # -- JSONL / text -------------------------------------------------------------------------

    def _open_binary(self, path: str) -> Tuple[io.BufferedIOBase, _CountingFile]:
        try:
            raw = open(path, "rb")
        except OSError as err:
            raise InputError(f"--input: cannot open {path}: {err.strerror}") from None
        counter = _CountingFile(raw)
        if path.lower().endswith(".gz"):
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=io.BufferedReader(counter, 1 << 20), mode="rb")
        else:
            stream = io.BufferedReader(counter, 1 << 20)
        return stream, counter

    def _iter_lines(self, path: str, kind: int, size: int) -> Iterator[RawRecord]:
        stream, counter = self._open_binary(path)
        lineno = 0
        gz = path.lower().endswith(".gz")
        read = 0
        try:
            while True:
                try:
                    line = stream.readline()
                except (OSError, EOFError, gzip.BadGzipFile) as err:
                    raise InputError(f"{path}:{lineno + 1}: cannot read ({err})") from None
                if not line:
                    break
                lineno += 1
                read += len(line)
                if size:
                    self._current_fraction = min(1.0, (counter.consumed if gz else read) / size)
                payload = line.rstrip(b"\r\n") if kind == KIND_TEXT else line
                yield RawRecord(kind, payload, path, lineno, len(line))
        finally:
            stream.close()
            counter.close()

    def _iter_text_blocks(self, path: str, size: int) -> Iterator[RawRecord]:
        stream, counter = self._open_binary(path)
        try:
            if self.config.text_unit == "file":
                data = stream.read()
                self._current_fraction = 1.0
                yield RawRecord(KIND_TEXT, data, path, 1, len(data))
                return
            block: List[bytes] = []
            start = 0
            nbytes = 0
            lineno = 0
            for line in stream:
                lineno += 1
                nbytes += len(line)
                if line.strip():
                    if not block:
                        start = lineno
                    block.append(line)
                    continue
                if block:
                    if size:
                        self._current_fraction = counter.consumed / size
                    yield RawRecord(KIND_TEXT, b"".join(block).rstrip(b"\r\n"), path, start, nbytes)
                    block, nbytes = [], 0
            if block:
                self._current_fraction = 1.0
                yield RawRecord(KIND_TEXT, b"".join(block).rstrip(b"\r\n"), path, start, nbytes)
        except (OSError, EOFError) as err:
            raise InputError(f"{path}: cannot read ({err})") from None
        finally:
            stream.close()
            counter.close()

    # -- parquet ------------------------------------------------------------------------------

    def _open_parquet(self, path: str):
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path, buffer_size=1 << 20)
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError with long messages
            from megatron_prealign.platform.errors import error_line  # here: platform imports torch

            raise InputError(f"{path}: not a readable parquet file ({error_line(err)})") from None

    def _check_parquet_schema(self, path: str) -> None:
        import pyarrow as pa

        is_string_view = getattr(pa.types, "is_string_view", None)  # absent from older pyarrow
        schema = self._open_parquet(path).schema_arrow
        for key in self.config.json_keys:
            index = schema.get_field_index(key)
            if index < 0:
                raise InputError(
                    f"--json-keys: column {key!r} not in {path} (columns: {', '.join(schema.names)})"
                )
            typ = schema.field(index).type
            view = bool(is_string_view and is_string_view(typ))
            if not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or view):
                raise InputError(f"--json-keys: column {key!r} of {path} is {typ}, not a string column")

    def _iter_parquet(self, path: str) -> Iterator[RawRecord]:
        import pyarrow.compute as pc

        parquet = self._open_parquet(path)
        total_rows = parquet.metadata.num_rows
        keys = list(self.config.json_keys)
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=self.config.parquet_batch_rows, columns=keys):
                columns = [batch.column(k).to_pylist() for k in keys]
                sizes = sum(pc.fill_null(pc.binary_length(batch.column(k)), 0).to_numpy() for k in keys)
                if total_rows:
                    self._current_fraction = min(1.0, (row + batch.num_rows) / total_rows)
                for i, values in enumerate(zip(*columns)):
                    row += 1
                    yield RawRecord(KIND_VALUES, values, path, row, int(sizes[i]))
        except InputError:
            raise
        except Exception as err:  # corrupt pages, truncated file
            from megatron_prealign.platform.errors import error_line  # here: platform imports torch

            raise InputError(f"{path}:row {row + 1}: cannot read parquet ({error_line(err)})") from None
        finally:
            parquet.close()


def iter_documents(inputs: Sequence[str], json_keys: Sequence[str] = ("text",), input_format: str = "auto") -> Iterator[str]:
    """The non-empty documents of ``inputs`` as strings, streamed (word counting, tokenizer training).

    The files are read as ``tools/preprocess_data.py`` reads them (:class:`CorpusReader`, one
    document per line of plain text); a list value (Megatron's pre-split sentences) gives one
    document per element.

    Raises:
        InputError: a missing file, an unknown extension, an unreadable file.
        MalformedRecordError: a record that cannot be decoded (names ``path:line``).
    """
    config = ReaderConfig(json_keys=tuple(json_keys), input_format=input_format)
    for record in CorpusReader(inputs, config):
        for value in decode_record(record, config.json_keys):
            for text in value if isinstance(value, list) else [value]:
                if text:
                    yield text
