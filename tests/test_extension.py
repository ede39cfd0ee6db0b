"""The compiled extension is built in place and importable (its pass is tested against the
Python twin in tests/test_codeswitch*.py)."""

import os

from megatron_prealign import _C


def test_extension_is_this_checkouts_build():
    import megatron_prealign

    assert os.path.dirname(_C.__file__) == os.path.dirname(megatron_prealign.__file__)
    assert hasattr(_C, "CodeswitchEngine")
