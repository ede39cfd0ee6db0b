"""Build and install megatron-prealign.

The package ships one compiled extension, ``megatron_prealign._C`` (pybind11, sources in
``csrc/``): the input-only codeswitcher and other token-stream passes that must run at
corpus scale. Install with ``pip install -e .`` (or ``pip install .``); see README.md.
"""

import os

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

ext_modules = [
    Pybind11Extension(
        "megatron_prealign._C",
        # module.cpp registers each concern; the codeswitcher is split along its seams: the
        # candidate index and kernel (headers, inlined into both units), the file pipeline, the binding
        ["csrc/module.cpp", "csrc/codeswitch.cpp", "csrc/codeswitch_pipeline.cpp"],
        depends=["csrc/common.h", "csrc/codeswitch_util.h", "csrc/candidate_index.h", "csrc/codeswitch_engine.h"],
        include_dirs=[os.path.join(HERE, "csrc")],
        cxx_std=17,
        extra_compile_args=["-O3", "-pthread"],
        extra_link_args=["-pthread"],
    )
]

setup(
    name="megatron-prealign",
    version="0.1.0",
    description="PreAlign (Li et al., EMNLP 2024) on Megatron-Core: cross-lingual pre-alignment "
    "and input-only codeswitching for multilingual LLM pretraining",
    packages=find_packages(include=["megatron_prealign", "megatron_prealign.*"]),
    python_requires=">=3.10",
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    install_requires=[
        # torch is not pinned here: clusters bring their own CUDA build. CPU machines pin it
        # through requirements/cpu-constraints.txt (an unpinned torch pulls GBs of CUDA wheels).
        "torch>=2.4",
        # 0.16.1 is the newest release installable on Python 3.11; >=0.17 needs Python 3.12.
        # 0.20 is allowed; tests/test_compat_mcore_newer.py checks our imports, call keywords
        # and config fields against the newest release on PyPI. Version differences are
        # confined to megatron_prealign/platform/compat.py.
        "megatron-core>=0.16.1,<0.21",
        "numpy>=1.24",
        "nltk>=3.8",
        "pybind11>=2.12",
        "psutil",  # megatron-core's dist_checkpointing async writer hangs without it
        "pyarrow>=14",  # CulturaX parquet shards
        "tokenizers>=0.15",
        "sentencepiece>=0.1.99",
        "tqdm",
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2.2", "transformers>=5.0,<6"],
        # tools/export_hf.py (GPT-2 / GPT-NeoX / Arcee directories for transformers 5.x)
        "export": ["transformers>=5.0,<6"],
        # Optional fast paths on GPU clusters; imported only when present.
        "te": ["transformer-engine[pytorch]"],
    },
)
