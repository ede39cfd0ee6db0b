"""Issue 11 (4): the C++ binding validates what it is given; no input from Python crashes it.

Every case runs in a subprocess, so a segfault fails the test instead of killing pytest.
"""

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = textwrap.dedent(
    """
    import os, sys, tempfile
    import numpy as np
    from megatron_prealign import _C

    V = 16
    def arrays(**over):
        a = dict(
            src_tokens=np.array([1, 2, 3], np.int32), src_offsets=np.array([0, 2, 3], np.int64),
            group_offsets=np.array([0, 1, 2], np.int64), group_lang=np.array([0, 0], np.int32),
            group_trans_offsets=np.array([0, 1, 2], np.int64), trans_offsets=np.array([0, 1, 3], np.int64),
            trans_tokens=np.array([7, 8, 9], np.int32), n_languages=1,
            word_start=np.ones(V, np.uint8), special=np.zeros(V, np.uint8), ratio=1.0, input_only=True,
            seed=1, opener=np.zeros(V, np.uint8), follow=np.ones(V, np.uint8), lead=np.zeros(V, np.uint8),
        )
        a.update(over)
        return a

    def engine(**over):
        return _C.CodeswitchEngine(**arrays(**over))

    def expect_value_error(fn, match):
        try:
            fn()
        except ValueError as e:
            assert match in str(e), (match, str(e))
            return
        raise AssertionError(f"no ValueError ({match})")

    tmp = tempfile.mkdtemp()
    def bin_file(tokens, dtype=np.uint16):
        path = os.path.join(tmp, "in.bin")
        np.asarray(tokens, dtype).tofile(path)
        return path
    """
)


def run(code, timeout=300):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=REPO)
    assert r.returncode == 0, f"exit {r.returncode} (negative: killed by a signal)\n{r.stdout}\n{r.stderr[-3000:]}"
    return r.stdout


def test_listed_cases_are_value_errors():
    out = run(
        """
        e = engine()
        assert e.apply(np.array([1, 2, 3], np.int32), 0)[0].tolist() == [1, 2, 8, 9]
        # offsets: non-increasing, huge, negative
        expect_value_error(lambda: engine(src_offsets=np.array([0, 3, 2], np.int64)), "src_offsets")
        expect_value_error(lambda: engine(src_offsets=np.array([0, 2**40, 3], np.int64)), "src_offsets")
        expect_value_error(lambda: engine(trans_offsets=np.array([0, -5, 3], np.int64)), "trans_offsets")
        expect_value_error(lambda: engine(group_trans_offsets=np.array([0, 5, 2], np.int64)), "group_trans_offsets")
        expect_value_error(lambda: engine(group_offsets=np.array([0, 2, 1], np.int64)), "group_offsets")
        expect_value_error(lambda: engine(n_languages=-1), "n_languages")
        # ids: 64-bit values that would wrap, float arrays
        expect_value_error(lambda: engine(src_tokens=np.array([1, 2, 2**32 + 3], np.int64)), "out of range")
        expect_value_error(lambda: engine(trans_tokens=np.array([7.0, 8.5, 9.0])), "integer array")
        expect_value_error(lambda: e.apply(np.array([1, 2, 2**32 + 1], np.int64), 0), "out of range")
        expect_value_error(lambda: e.apply(np.array([1.0, 2.0]), 0), "integer array")
        expect_value_error(lambda: e.apply(np.array([1, 99], np.int32), 0), "outside the vocabulary")
        expect_value_error(lambda: e.apply(np.array([-1], np.int32), 0), "outside the vocabulary")
        expect_value_error(lambda: e.apply(np.zeros((2, 2), np.int32), 0), "1-D")
        # process_dataset: negative lengths, bad pointers, same input and output
        src = bin_file([1, 2, 3, 1, 2, 3])
        out, mask = os.path.join(tmp, "o.bin"), os.path.join(tmp, "m.bin")
        L, P = np.array([3, 3], np.int32), np.array([0, 6], np.int64)
        n, counts = e.process_dataset(src, out, mask, L, P, 2, 1, 1, None)
        assert n.tolist() == [4, 4] and counts[3] == 2
        expect_value_error(lambda: e.process_dataset(src, out, mask, np.array([3, -3], np.int32), P, 2, 2, 1, None), "negative")
        expect_value_error(lambda: e.process_dataset(src, out, mask, L, np.array([6, 0], np.int64), 2, 2, 1, None), "overlaps")
        expect_value_error(lambda: e.process_dataset(src, out, mask, L, np.array([0, 2**50], np.int64), 2, 2, 1, None), "outside")
        expect_value_error(lambda: e.process_dataset(src, out, mask, L, np.array([-2, 6], np.int64), 2, 2, 1, None), "outside")
        expect_value_error(lambda: e.process_dataset(src, out, mask, np.array([3, 2**31], np.int64), P, 2, 2, 1, None), "out of range")
        expect_value_error(lambda: e.process_dataset(src, out, mask, np.array([3, 4], np.int32), P, 2, 2, 1, None), "past the end")
        expect_value_error(lambda: e.process_dataset(src, src, mask, L, P, 2, 2, 1, None), "is the input")
        expect_value_error(lambda: e.process_dataset(src, out, src, L, P, 2, 2, 1, None), "is the input")
        os.link(src, os.path.join(tmp, "hard.bin"))
        expect_value_error(lambda: e.process_dataset(src, os.path.join(tmp, "hard.bin"), mask, L, P, 2, 2, 1, None), "is the input")
        expect_value_error(lambda: e.process_dataset(src, out, out, L, P, 2, 2, 1, None), "same path")
        expect_value_error(lambda: e.process_dataset(src, out, mask, L, P, 3, 2, 1, None), "itemsize")
        expect_value_error(lambda: e.process_dataset(src, out, mask, L, P, 2, 10**9, 1, None), "threads")
        assert np.fromfile(src, np.uint16).tolist() == [1, 2, 3, 1, 2, 3]  # the input is intact
        print("ok")
        """
    )
    assert out.strip().endswith("ok")


def test_seeded_fuzz_never_crashes():
    # 400 iterations of random hostile arguments; each call either works or raises an exception
    run(
        """
        rng = np.random.default_rng(20261201)
        dtypes = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.float32, np.float64, bool]
        def hostile(n, lo=-2**40, hi=2**40):
            choice = rng.integers(0, 5)
            if choice == 0:
                return rng.integers(-3, 20, size=n).astype(rng.choice(dtypes))
            if choice == 1:
                return rng.integers(lo, hi, size=n, dtype=np.int64)
            if choice == 2:
                return np.sort(rng.integers(0, 12, size=n)).astype(np.int64)
            if choice == 3:
                return rng.random(n) * 10
            return np.zeros((n, 2), np.int64)
        base = arrays()
        ok = errors = 0
        for it in range(400):
            kw = dict(base)
            for key in rng.choice(list(kw), size=rng.integers(1, 4), replace=False):
                if key in ("ratio",):
                    kw[key] = float(rng.choice([-1.0, 0.5, 2.0, float("nan")]))
                elif key in ("n_languages",):
                    kw[key] = int(rng.choice([-5, 0, 1, 3, 2**40]))
                elif key in ("seed", "input_only"):
                    continue
                else:
                    kw[key] = hostile(int(rng.integers(0, 6)))
            try:
                e = _C.CodeswitchEngine(**kw)
            except (ValueError, TypeError, OverflowError, MemoryError):
                errors += 1
                e = engine()
            toks = hostile(int(rng.integers(0, 30)), -2**33, 2**33)
            try:
                e.apply(toks, int(rng.integers(-2, 5)))
                ok += 1
            except (ValueError, TypeError, OverflowError):
                errors += 1
            n = int(rng.integers(0, 4))
            src = bin_file(rng.integers(0, 20, size=int(rng.integers(0, 12))), np.uint16)
            try:
                e.process_dataset(src, os.path.join(tmp, "o.bin"), os.path.join(tmp, "m.bin"),
                                  hostile(n, -2**33, 2**33), hostile(n, -2**45, 2**45),
                                  int(rng.choice([2, 4, 8, -1])), int(rng.choice([1, 2, 0, -3])),
                                  int(rng.choice([1, 5, 0, -1, 2**40])), None)
                ok += 1
            except (ValueError, TypeError, OverflowError, RuntimeError):
                errors += 1
        print(ok, errors)
        assert errors > 100
        """
    )
