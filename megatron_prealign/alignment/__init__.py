"""The alignment table: building it from a corpus and dictionaries, and its file format.

* :mod:`~megatron_prealign.alignment.table`: ``AlignmentTable`` / ``AlignmentEntry`` /
  ``Translation``, ``load``/``save``/``validate`` (the JSONL format is documented there).
* :mod:`~megatron_prealign.alignment.words`: English word counting with NLTK's word tokenizer.
* :mod:`~megatron_prealign.alignment.dictionaries`: MUSE / TSV / PreAlign-JSONL dictionaries.
* :mod:`~megatron_prealign.alignment.build`: ``build_alignment_table`` (+ coverage report) and
  ``build_en_clone_table``.
"""

from megatron_prealign.alignment.table import (
    FORMAT_NAME,
    FORMAT_VERSION,
    AlignmentEntry,
    AlignmentTable,
    Translation,
    check_table_tokenizer,
)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "AlignmentEntry", "AlignmentTable", "Translation", "check_table_tokenizer"]
