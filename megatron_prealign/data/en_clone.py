"""The En-Clone dataset pass (paper Sec. 4.1.1): an English ``.bin/.idx`` into its En-Clone twin.

Token ``i`` becomes its clone (:meth:`~megatron_prealign.tokenizer.en_clone.EnCloneTokenizer.clone_ids`);
sequence lengths and document boundaries are kept. Streamed in chunks, written under temporary
names and renamed when complete.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, Optional

import numpy as np

from megatron_prealign.data.indexed import read_index, write_index
from megatron_prealign.platform.files import atomic_paths
from megatron_prealign.tokenizer.en_clone import EnCloneTokenizer, clone_dtype

__all__ = ["clone_indexed_dataset"]


def clone_indexed_dataset(
    input_prefix: str,
    output_prefix: str,
    tokenizer: EnCloneTokenizer,
    chunk_tokens: int = 1 << 24,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Dict[str, Any]:
    """Write the En-Clone twin of a Megatron ``.bin/.idx`` dataset.

    Sequence lengths and document boundaries are copied; every token is mapped with
    :meth:`EnCloneTokenizer.clone_ids`; the output dtype is Megatron's choice for ``2V`` ids.
    The token buffer is streamed in chunks of ``chunk_tokens``. Both files are written under
    ``{output_prefix}.tmp-{pid}`` and renamed (``.bin`` first, ``.idx`` last) on success.

    Args:
        input_prefix (str): English dataset prefix (``prefix.bin``/``prefix.idx``).
        output_prefix (str): output prefix.
        tokenizer (EnCloneTokenizer): built on the tokenizer that produced the input.
        chunk_tokens (int): tokens per streamed chunk.
        progress (Optional[Callable[[int, int], None]]): called with (tokens done, total),
            first with ``(0, total)`` when streaming starts.

    Returns:
        Dict[str, Any]: ``{"tokens", "sequences", "documents", "dtype", "seconds"}``.

    Raises:
        FileNotFoundError: the input dataset is missing.
        ValueError: the input ``.idx``/``.bin`` is truncated or corrupt
            (``IndexedDatasetError``), or an input token is outside the base vocabulary (names
            the dataset and offset).
    """
    for ext in (".bin", ".idx"):
        if not os.path.isfile(input_prefix + ext):
            raise FileNotFoundError(f"--input: no such file: {input_prefix + ext}")
    # a truncated/corrupt .idx or .bin -> one-line IndexedDatasetError (a ValueError) instead of
    # megatron-core's bare struct/buffer errors
    index = read_index(input_prefix)
    inputs = {os.path.realpath(input_prefix + ext) for ext in (".bin", ".idx")}
    if inputs & {os.path.realpath(output_prefix + ext) for ext in (".bin", ".idx")}:
        raise ValueError(f"--output-prefix {output_prefix} would overwrite the input dataset {input_prefix}")
    start = time.time()
    out_dtype = clone_dtype(tokenizer.vocab_size)
    total = int(np.sum(index.sequence_lengths, dtype=np.int64))
    data = np.memmap(input_prefix + ".bin", dtype=index.dtype, mode="r")
    try:
        with atomic_paths([output_prefix + ".bin", output_prefix + ".idx"]) as (tmp_bin, tmp_idx):
            with open(tmp_bin, "wb") as out:
                done = 0
                if progress is not None:
                    progress(0, total)
                while done < total:
                    end = min(total, done + chunk_tokens)
                    try:
                        cloned = tokenizer.clone_ids(np.asarray(data[done:end]).astype(np.int64))
                    except ValueError as e:
                        raise ValueError(f"{input_prefix}.bin tokens [{done}, {end}): {e}") from None
                    out.write(cloned.astype(out_dtype, copy=False).tobytes(order="C"))
                    done = end
                    if progress is not None:
                        progress(done, total)
            write_index(tmp_idx, out_dtype, index.sequence_lengths, index.document_indices)
    finally:
        del data
    return {
        "tokens": total,
        "sequences": int(len(index.sequence_lengths)),
        "documents": int(len(index.document_indices) - 1),
        "dtype": np.dtype(out_dtype).name,
        "seconds": time.time() - start,
    }
