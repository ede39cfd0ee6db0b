"""The PreAlign quickstart: the whole method end to end on built-in data, on CPU, no download.

Runs the paper's synthetic English -> En-Clone experiment (Table 1) at laptop scale: three arms
with the same budget -- Joint Training, PreAlign and the paper's perfect-alignment upper bound
(§4.1.1) -- plus the controls that say whether the evaluations are informative, side by side::

    bash scripts/quickstart.sh                       # set up .venv, then the full run (~27 min on 2 idle cores)
    bash scripts/quickstart.sh --small               # the same pipeline, tiny sizes (a few minutes; used by the tests)
    python examples/quickstart/run.py --output-dir quickstart_out      # without the setup step
    python examples/quickstart/run.py --seeds 1234,1235,1236 --output-dir qs_seeds   # mean +- sd over seeds
    python examples/quickstart/run.py --force        # redo every stage (default: skip finished ones)
    python examples/quickstart/run.py --ablations all --output-dir quickstart_out   # + paper Tables 3/2 (~1 h more)
    python examples/quickstart/run.py --set knowledge_boost=20 --output-dir qs_kb20  # override one preset size

Stages (each prints a banner with the elapsed time; outputs under ``--output-dir``)::

    1 corpus     built-in English (megatron_prealign.synthetic.english, seeded grammar): training
                 documents, a disjoint share to clone (the target language gets ~2% of English's
                 data, paper §4.3: 1%), held-out validation documents; a generated NLI task in
                 the XNLI format (megatron_prealign.synthetic.nli)
    2 tokenizer  byte-level BPE (600 ids) trained on the English corpus tools/train_tokenizer.py
    3 data       CLKA facts, English knowledge text + tests: names   tools/make_clka.py --name-pieces corpus
                 built from frequent corpus BPE pieces; every distractor object occurs in the
                 knowledge text exactly as often as the true one
                 binarize English                                     tools/preprocess_data.py
                 En-Clone alignment table (every word -> its clone)   tools/build_alignment_table.py --en-clone
                 English with 5% input-only codeswitching (C++ pass)  tools/preprocess_data.py --codeswitch
                 En-Clone training + validation data                  tools/make_en_clone.py
    4 train      untied input/output embeddings (as the paper), the same iterations x global batch,
                 torchrun --nproc-per-node 2 (DP=2, gloo):
                 Joint Training   --prealign-mode none, English + En-Clone + knowledge
                 PreAlign         --prealign-mode init: an alignment stage of its own (300 of
                                  the 1,200 steps, own LR schedule), then the optimizer is reset and pretraining runs its
                                  own warm-up and decay; codeswitched English + En-Clone + knowledge
                 Upper bound      --clone-perfect-init (clone rows = English rows, input and
                                  output), then PreAlign's pretraining (codeswitched data)
                 control: No knowledge   Joint Training without the knowledge text
    5 evaluate   per arm: perplexity En / En-Clone                   tools/eval_perplexity.py
                 CLKA En-Clone / En beside its familiarity baseline  tools/eval_clka.py --familiarity-text
                 zero-shot NLI En -> En-Clone                        tools/eval_xnli.py
                 mixed-script ratio                                  tools/eval_mixed_script.py
                 aligned-word similarity (raw, centred, norm ratio)  tools/eval_similarity.py
                 oracle re-alignment control (clone rows := English  tools/oracle_realign.py, then
                 rows + the model's language offset): CLKA + NLI      eval_clka / eval_xnli
                 No knowledge: CLKA
    6 summary    tables (Markdown) + PNG curves                      tools/summarize_results.py
                 the side-by-side report with standard errors and the    tools/summarize_results.py
                 share of the Joint -> oracle gap each arm closes        --layout arms
                 (``--seeds``: mean ± sd over seeds, the same tool with --seed-dir)

A stage is skipped when its outputs exist (``--force`` redoes all; ``--from-stage`` redoes one
and those after it). A failing command stops the pipeline, printing the command and its error
(every command's full output is in ``{output_dir}/logs/``). Measured results:
docs/results/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "tools")
if REPO not in sys.path:
    sys.path.insert(0, REPO)
STAGES = ("corpus", "tokenizer", "data", "train", "evaluate", "summary")
ARMS = ("joint", "prealign", "upper_bound")
"""The compared arms (same budget); each also gets an oracle re-alignment control."""
CONTROL = "no_knowledge"
"""The CLKA control: Joint Training without the knowledge text."""
RUNS = ARMS + (CONTROL,)
"""Every training run."""
ABLATIONS = ("joint_cs", "prealign_no_cs", "on_the_fly", "post", "post_low_lr", "prealign_short", "prealign_cs_knowledge")
"""Optional runs (``--ablations``), the same budget: the paper's Table 3 (#2 Joint + input-only
codeswitching, #3 pre-alignment without codeswitching) and Table 2 (on-the-fly, post alignment;
post alignment also at the LR pretraining ends with, as the paper gives no post-alignment LR),
and two configurations of the method tried for keeping the alignment alive (a third of the
alignment steps: the earlier default of 100; the knowledge text codeswitched as well). Each gets its oracle re-alignment control."""
RUN_TITLES = {"joint": "Joint Training", "prealign": "PreAlign", "upper_bound": "Upper bound (perfect init)",
              CONTROL: "No knowledge (control)",
              "joint_cs": "#2 Joint + input-only CS", "prealign_no_cs": "#3 Pre-alignment, no CS",
              "on_the_fly": "On-the-fly alignment", "post": "Post alignment",
              "post_low_lr": "Post alignment, LR 1/10",
              "prealign_short": "PreAlign, 1/3 of the alignment steps", "prealign_cs_knowledge": "PreAlign, knowledge codeswitched too"}


PAPER_TABLE1 = {"ppl_en_clone": "21.6 → 16.5", "ppl_en": "16.1 → 15.9", "xnli_en_clone": "74.9 → 79.3", "xnli_en": "79.8 → 80.1",
                "clka_en_clone": "27.7 → 90.3"}
"""The paper's Table 1 (Joint Training → PreAlign) beside the report's rows, by metric key."""


def ablation_rows(ablations: Sequence[str]) -> List[str]:
    """Rows of the ablation table: the paper's Table 3 (#1 Joint, #2, #3, #4 PreAlign), the other
    requested runs (Table 2, configurations of the method), the upper bound."""
    table3 = [a for a in ("joint_cs", "prealign_no_cs") if a in ablations]
    return ["joint"] + table3 + ["prealign"] + [a for a in ablations if a not in table3] + ["upper_bound"]


def oracle_name(run: str) -> str:
    """Result folder of ``run``'s oracle re-alignment control."""
    return f"{run}_oracle"


@dataclass
class Preset:
    """Sizes of one quickstart variant (``full`` or ``small``)."""

    en_documents: int
    """English training documents (~53 tokens each)."""
    clone_fraction: float
    """En-Clone training documents as a fraction of the English ones (disjoint documents)."""
    valid_documents: int
    """Held-out documents (English validation; En-Clone validation = the same, cloned)."""
    vocab_size: int
    """BPE vocabulary (the En-Clone model's is twice this). Small on purpose: as with GPT-2 on
    CulturaX in the paper, the artificial CLKA names must split into subwords that the English
    (and so the En-Clone) corpus uses; a large vocabulary learns every grammar word whole and
    leaves the names' pieces unused outside the knowledge data."""
    clka_facts: int
    """CLKA facts (knowledge repeated 1/2/5/10 times in the English knowledge data)."""
    knowledge_boost: float
    """Blend weight of the knowledge data relative to its token share (how many more epochs).
    Full preset: 13 with 1,200 steps (8.2 epochs of the knowledge text; 10 gave 9.0 with 1,500
    steps); chosen on the CLKA controls (English CLKA far above the no-knowledge model, the oracle
    near English), not on transfer: docs/results."""
    nli_train: int
    nli_dev: int
    nli_test: int
    num_layers: int
    hidden_size: int
    num_heads: int
    seq_length: int
    micro_batch_size: int
    global_batch_size: int
    train_iters: int
    """Optimizer steps of each run (PreAlign's alignment stage included). Full preset: 1,200, so
    that the whole quickstart stays under 30 minutes on 2 cores; the earlier 1,500 (35 min; the
    configuration of the ablations in docs/results) is ``--set train_iters=1500 --set save_interval=375
    --set knowledge_boost=10``."""
    prealign_iters: int
    """PreAlign's alignment-stage steps (paper: 500 of ~24.5k). Full preset: 300, chosen over 100
    (of 1,500 steps) on the selection criteria (centred aligned-word cosine, En-Clone validation
    perplexity) on three seeds (docs/results); the ``prealign_short`` ablation runs a third."""
    post_iters: int
    """Post alignment's steps at the end of training (Table 2 ablation)."""
    words_per_batch: int
    save_interval: int
    lr: float
    warmup_iters: int
    xnli_epochs: int
    xnli_max_length: int
    ppl_max_documents: int
    ppl_every_checkpoint: bool
    mixed_prompts: int
    mixed_new_tokens: int
    similarity_batches: int


PRESETS: Dict[str, Preset] = {
    "full": Preset(
        en_documents=20000, clone_fraction=0.02, valid_documents=400, vocab_size=600, clka_facts=200,
        knowledge_boost=13.0, nli_train=3000, nli_dev=300, nli_test=600,
        num_layers=4, hidden_size=128, num_heads=4, seq_length=128, micro_batch_size=8, global_batch_size=16,
        train_iters=1200, prealign_iters=300, post_iters=100, words_per_batch=128, save_interval=300, lr=1e-3, warmup_iters=50,
        xnli_epochs=2, xnli_max_length=48, ppl_max_documents=400, ppl_every_checkpoint=True,
        mixed_prompts=200, mixed_new_tokens=32, similarity_batches=10,
    ),
    "small": Preset(
        en_documents=1500, clone_fraction=0.05, valid_documents=60, vocab_size=400, clka_facts=40,
        knowledge_boost=10.0, nli_train=300, nli_dev=60, nli_test=120,
        num_layers=2, hidden_size=64, num_heads=4, seq_length=64, micro_batch_size=4, global_batch_size=8,
        train_iters=40, prealign_iters=10, post_iters=10, words_per_batch=32, save_interval=20, lr=1e-3, warmup_iters=5,
        xnli_epochs=1, xnli_max_length=48, ppl_max_documents=60, ppl_every_checkpoint=False,
        mixed_prompts=16, mixed_new_tokens=16, similarity_batches=2,
    ),
}


class PipelineError(RuntimeError):
    """A stage failed; the message names the command and its error."""


class Pipeline:
    """Runs the stages into ``out``; each stage's outputs mark it done."""

    def __init__(self, out: str, preset_name: str, force: bool, from_stage: Optional[str], seed: int,
                 ablations: Sequence[str] = (), preset: Optional[Preset] = None) -> None:
        self.out = os.path.abspath(out)
        self.ablations = tuple(ablations)
        self.preset_name = preset_name
        self.p = preset or PRESETS[preset_name]
        self.force = force
        self.from_stage = from_stage
        self.seed = seed
        self.t0 = time.monotonic()
        self.logs = os.path.join(self.out, "logs")
        self.print_lock = threading.Lock()
        self.children: List[subprocess.Popen] = []
        os.makedirs(self.logs, exist_ok=True)

    # ------------------------------------------------------------------ helpers
    @property
    def runs(self) -> tuple:
        """Every training run of this pipeline: the arms, the control, the requested ablations."""
        return RUNS + self.ablations

    @property
    def oracle_runs(self) -> List[str]:
        """The runs that get an oracle re-alignment control."""
        return list(ARMS + self.ablations)

    def path(self, *parts: str) -> str:
        """A path under the output directory."""
        return os.path.join(self.out, *parts)

    def elapsed(self) -> str:
        """Wall time since the pipeline started, ``m:ss``."""
        s = int(time.monotonic() - self.t0)
        return f"{s // 60:d}:{s % 60:02d}"

    def say(self, msg: str) -> None:
        with self.print_lock:
            print(msg, flush=True)

    def banner(self, index: int, name: str, what: str) -> None:
        self.say(f"\n{'=' * 100}\n[quickstart {self.elapsed()}] stage {index}/{len(STAGES)}: {name} — {what}\n{'=' * 100}")

    def redo(self, stage: str) -> bool:
        """Whether ``stage`` must run even if its outputs exist."""
        if self.force:
            return True
        if self.from_stage is not None:
            return STAGES.index(stage) >= STAGES.index(self.from_stage)
        return False

    def done(self, stage: str, outputs: Sequence[str]) -> bool:
        """Whether ``stage``'s step can be skipped: all ``outputs`` exist and no redo was asked for."""
        if self.redo(stage):
            return False
        missing = [o for o in outputs if not os.path.exists(o)]
        return not missing

    def tok_flags(self, clone: bool = False) -> List[str]:
        """The tokenizer flags of every tool (``--en-clone``: the 2V En-Clone vocabulary)."""
        tok = self.path("tokenizer")
        flags = ["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", os.path.join(tok, "vocab.json"),
                 "--merge-file", os.path.join(tok, "merges.txt")]
        return flags + (["--en-clone"] if clone else [])

    def env(self, threads: int) -> Dict[str, str]:
        """Environment of a child command: ``threads`` intra-op threads, repo on the path, CPU only."""
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(threads)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONWARNINGS"] = "ignore"
        env["TQDM_MININTERVAL"] = "5"
        env["PYTHONPATH"] = os.pathsep.join([REPO] + [x for x in env.get("PYTHONPATH", "").split(os.pathsep) if x])
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
        # Single-process tools initialise gloo from MASTER_ADDR/PORT: give each its own free port
        # (two evaluations run at once; torchrun --standalone picks its own).
        env["MASTER_ADDR"] = "127.0.0.1"
        env["MASTER_PORT"] = str(_free_port())
        return env

    def run(self, name: str, cmd: List[str], threads: int = 2, prefix: str = "", quiet: Sequence[str] = ()) -> str:
        """Run ``cmd``; stream its output (prefixed) to the console and ``logs/{name}.log``.

        Raises:
            PipelineError: non-zero exit (the message has the command and its output's tail).
        """
        log_path = os.path.join(self.logs, f"{name}.log")
        shown = " ".join(shlex.quote(c) for c in cmd)
        self.say(f"{prefix}$ {shown}")
        noise = re.compile("|".join([r"Warning", r"warnings\.warn", r"RNG state changed", r"^\s*$",
                                     r"checkpoint\.load_state_dict", r"return func\(", r"Consider using tensor",
                                     r"Falling back", r"deprecated"] + list(quiet)))
        t = time.monotonic()
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"$ {shown}\n")
            proc = subprocess.Popen(cmd, cwd=REPO, env=self.env(threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self.children.append(proc)
            assert proc.stdout is not None
            buf = b""
            while True:
                chunk = proc.stdout.read1(65536) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
                if not chunk:
                    break
                buf += chunk
                parts = re.split(rb"[\r\n]", buf)
                buf = parts.pop()
                for raw in parts:
                    line = raw.decode("utf-8", errors="replace")
                    log.write(line + "\n")
                    if not noise.search(line):
                        self.say(f"{prefix}{line[:700]}")
            if buf:
                log.write(buf.decode("utf-8", errors="replace") + "\n")
            rc = proc.wait()
            self.children.remove(proc)
        if rc != 0:
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                lines = fh.readlines()[1:]
            # The cause: a tool's one-line "error:" (torchrun buries it under its own traceback),
            # else the last exception line, then the log's tail.
            cause = [ln for ln in lines if re.search(r"(^|\s)error: ", ln)][:3] or \
                [ln for ln in lines if re.match(r"^\w[\w.]*(Error|Exception)\b", ln)][-1:]
            tail = "".join(lines[-25:])
            raise PipelineError(f"command failed (exit {rc}) after {time.monotonic() - t:.0f} s: {shown}\n"
                                + (f"error: {''.join(cause).strip()}\n" if cause else "")
                                + f"--- last lines of {log_path} ---\n{tail}")
        self.say(f"{prefix}[quickstart {self.elapsed()}] {name}: ok in {time.monotonic() - t:.1f} s")
        return log_path

    def py(self, tool: str) -> List[str]:
        """``python tools/{tool}`` with this interpreter."""
        return [sys.executable, os.path.join(TOOLS, tool)]

    # ------------------------------------------------------------------ stages
    def stage_corpus(self) -> None:
        self.banner(1, "corpus", "built-in English, En-Clone share, validation, NLI task")
        outs = [self.path("corpus", f) for f in ("en.jsonl", "clone_source.jsonl", "valid.jsonl", "corpus.json")]
        outs += [self.path("nli", f) for f in ("train.tsv", "xnli.dev.tsv", "xnli.test.tsv")]
        if self.done("corpus", outs):
            self.say("[skip] corpus exists")
            return
        from megatron_prealign.synthetic import english as synthetic, nli as synthetic_nli

        folder = self.path("corpus")
        os.makedirs(folder, exist_ok=True)
        p = self.p
        n_clone = max(1, int(round(p.en_documents * p.clone_fraction)))
        # One generated stream: the first en_documents are English training data, the next
        # n_clone documents are cloned (disjoint from English, same distribution), the validation
        # documents come from another seed.
        docs = synthetic.generate_documents(synthetic.SyntheticCorpusConfig(num_documents=p.en_documents + n_clone,
                                                                            seed=self.seed))
        stats = {}
        for name, count in (("en.jsonl", p.en_documents), ("clone_source.jsonl", n_clone)):
            _write_lines(os.path.join(folder, name), (json.dumps({"text": d}) for d in _take(docs, count, name)))
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                words = sum(len(json.loads(line)["text"].split()) for line in fh)
            stats[name] = {"documents": count, "words": words}
        n, w = synthetic.write_jsonl(os.path.join(folder, "valid.jsonl"),
                                     synthetic.SyntheticCorpusConfig(num_documents=p.valid_documents, seed=self.seed + 1))
        stats["valid.jsonl"] = {"documents": n, "words": w}
        synthetic_nli.write_xnli_task(self.path("nli"), synthetic_nli.NLITaskConfig(
            train=p.nli_train, dev=p.nli_dev, test=p.nli_test, seed=self.seed + 2))
        for name, s in stats.items():
            self.say(f"  {name:20s} {s['documents']:7d} documents {s['words']:9d} words")
        self.say(f"  nli/                 {p.nli_train} train / {p.nli_dev} dev / {p.nli_test} test pairs (XNLI TSV)")
        _write_json(self.path("corpus", "corpus.json"), {"preset": self.preset_name, "seed": self.seed, "files": stats})

    def stage_tokenizer(self) -> None:
        self.banner(2, "tokenizer", "byte-level BPE on the English corpus")
        outs = [self.path("tokenizer", f) for f in ("vocab.json", "merges.txt", "tokenizer.json")]
        if self.done("tokenizer", outs):
            self.say("[skip] tokenizer exists")
            return
        self.run("tokenizer", self.py("train_tokenizer.py") + [
            "--input", self.path("corpus", "en.jsonl"), "--json-keys", "text",
            "--vocab-size", str(self.p.vocab_size), "--output-dir", self.path("tokenizer")])

    def stage_data(self) -> None:
        self.banner(3, "data", "CLKA, binarize, En-Clone table, codeswitch (C++), En-Clone data")
        d = self.path("data")
        os.makedirs(d, exist_ok=True)
        table = self.path("tables", "en_clone.jsonl")
        steps = [
            ("binarize_en", [os.path.join(d, "en_text_document.bin")], self.py("preprocess_data.py") + [
                "--input", self.path("corpus", "en.jsonl"), "--output-prefix", os.path.join(d, "en"), "--append-eod",
                "--workers", "1"] + self.tok_flags()),
            ("alignment_table", [table], self.py("build_alignment_table.py") + [
                "--input", self.path("corpus", "en.jsonl"), self.knowledge_text(), "--json-keys", "text",
                "--en-clone", "--min-count", "20", "--workers", "1", "--output", table] + self.tok_flags()),
            ("codeswitch_en", [os.path.join(d, "en_cs_text_document_lossmask.bin")], self.py("preprocess_data.py") + [
                "--input", self.path("corpus", "en.jsonl"), "--output-prefix", os.path.join(d, "en_cs"), "--append-eod",
                "--workers", "1", "--codeswitch", "--alignment-table", table, "--codeswitch-ratio", "0.05",
                "--codeswitch-mode", "input-only", "--seed", str(self.seed)] + self.tok_flags(clone=True)),
            ("binarize_clone_source", [os.path.join(d, "clone_source_text_document.bin")], self.py("preprocess_data.py") + [
                "--input", self.path("corpus", "clone_source.jsonl"), "--output-prefix", os.path.join(d, "clone_source"),
                "--append-eod", "--workers", "1"] + self.tok_flags()),
            ("make_en_clone", [os.path.join(d, "en_clone_text_document.bin")], self.py("make_en_clone.py") + [
                "--input", os.path.join(d, "clone_source_text_document"),
                "--output-prefix", os.path.join(d, "en_clone_text_document")] + self.tok_flags()),
            ("binarize_valid", [os.path.join(d, "valid_en_text_document.bin")], self.py("preprocess_data.py") + [
                "--input", self.path("corpus", "valid.jsonl"), "--output-prefix", os.path.join(d, "valid_en"),
                "--append-eod", "--workers", "1"] + self.tok_flags()),
            ("make_en_clone_valid", [os.path.join(d, "valid_en_clone_text_document.bin")], self.py("make_en_clone.py") + [
                "--input", os.path.join(d, "valid_en_text_document"),
                "--output-prefix", os.path.join(d, "valid_en_clone_text_document")] + self.tok_flags()),
        ]
        # Names are built from frequent BPE pieces of the English corpus, so the knowledge text
        # (and the table built from it) depends on the tokenizer: CLKA comes first.
        make_clka = ("make_clka", [self.path("clka", "manifest.json")], self.py("make_clka.py") + [
            "--output-dir", self.path("clka"), "--overwrite", "--seed", str(self.seed),
            "--facts-per-period", str(self.p.clka_facts), "--languages", "en",
            "--name-pieces", "corpus", "--name-corpus", self.path("corpus", "en.jsonl")] + self.tok_flags())
        english_chain = [make_clka] + steps[1:3]
        if "prealign_cs_knowledge" in self.ablations:  # the knowledge text with 5% input-only codeswitching too
            english_chain.append(("codeswitch_knowledge", [os.path.join(d, "knowledge_cs_text_document_lossmask.bin")],
                                  self.py("preprocess_data.py") + [
                "--input", self.knowledge_text(), "--output-prefix", os.path.join(d, "knowledge_cs"), "--append-eod",
                "--workers", "1", "--codeswitch", "--alignment-table", table, "--codeswitch-ratio", "0.05",
                "--codeswitch-mode", "input-only", "--seed", str(self.seed)] + self.tok_flags(clone=True)))
        # independent chains on two workers (one core each), the longest first
        self.run_units("data", [("english", english_chain), ("binarize", steps[:1]), ("en-clone", steps[3:5]),
                                ("valid", steps[5:7])])
        self._check_knowledge_matches()

    def _check_knowledge_matches(self) -> None:
        """The CLKA knowledge make_clka binarized is the text the tokenizer/table saw."""
        with open(self.path("clka", "facts.jsonl"), encoding="utf-8") as fh:
            n_facts = sum(1 for _ in fh)
        if n_facts != self.p.clka_facts:
            raise PipelineError(f"{self.path('clka')}: {n_facts} facts, expected {self.p.clka_facts} (stale; rerun with --force)")

    def knowledge_text(self) -> str:
        """The English CLKA knowledge text make_clka wrote (JSONL)."""
        return self.path("clka", "knowledge.jsonl")

    def blend(self, english_prefix: str, knowledge: bool = True, knowledge_prefix: Optional[str] = None) -> List[str]:
        """``--data-path`` blend: English, En-Clone, knowledge, weighted by tokens (knowledge boosted)."""
        from megatron_prealign.data.indexed import open_indexed_dataset

        d = self.path("data")
        parts = [(english_prefix, 1.0), (os.path.join(d, "en_clone_text_document"), 1.0)]
        if knowledge:
            parts.append((knowledge_prefix or self.path("clka", "knowledge", "period_000_text_document"), self.p.knowledge_boost))
        out: List[str] = []
        for prefix, boost in parts:
            ds = open_indexed_dataset(prefix)
            tokens = int(ds.sequence_lengths.sum())
            out += [f"{tokens * boost:.0f}", prefix]
        return out

    def train_cmd(self, run: str) -> List[str]:
        """The torchrun command of ``run`` (one of :data:`RUNS`); the same budget for all."""
        p = self.p
        ckpt = self.path("runs", run, "checkpoints")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--max-restarts", "0",
               os.path.join(REPO, "pretrain_prealign.py"),
               "--num-layers", str(p.num_layers), "--hidden-size", str(p.hidden_size), "--num-attention-heads", str(p.num_heads),
               "--seq-length", str(p.seq_length), "--hidden-dropout", "0", "--attention-dropout", "0",
               "--micro-batch-size", str(p.micro_batch_size), "--global-batch-size", str(p.global_batch_size),
               "--train-iters", str(p.train_iters), "--lr", str(p.lr), "--min-lr", str(p.lr / 10),
               "--lr-decay-style", "cosine", "--lr-warmup-iters", str(p.warmup_iters), "--weight-decay", "0.01",
               "--clip-grad", "1.0", "--seed", str(self.seed), "--transformer-impl", "local",
               "--split", "100,0,0", "--eval-iters", "0", "--eval-interval", str(p.train_iters + 1),
               "--num-workers", "0", "--log-interval", str(max(1, p.train_iters // 40)),
               "--save", ckpt, "--save-interval", str(p.save_interval), "--data-cache-path", self.path("runs", run, "cache"),
               "--tensorboard-dir", self.path("runs", run, "tensorboard"),
               # untied input and output embeddings, as the paper's and the authors' models
               "--untie-embeddings-and-output-weights",
               # every run logs the aligned-word statistics of its embeddings (raw/centred cosine)
               "--alignment-table", self.path("tables", "en_clone.jsonl"),
               ] + self.tok_flags(clone=True)
        d = self.path("data")
        english, codeswitched = os.path.join(d, "en_text_document"), os.path.join(d, "en_cs_text_document")
        if run == "joint":
            cmd += ["--prealign-mode", "none", "--data-path"] + self.blend(english)
        elif run == CONTROL:
            cmd += ["--prealign-mode", "none", "--data-path"] + self.blend(english, knowledge=False)
        elif run == "upper_bound":  # paper §4.1.1: perfect alignment at initialisation, then PreAlign's pretraining
            cmd += ["--prealign-mode", "none", "--clone-perfect-init", "--data-path"] + self.blend(codeswitched)
        elif run in ("prealign", "prealign_no_cs", "prealign_short", "prealign_cs_knowledge"):
            iters = max(1, p.prealign_iters // 3) if run == "prealign_short" else p.prealign_iters
            data = self.blend(english) if run == "prealign_no_cs" else self.blend(
                codeswitched, knowledge_prefix=os.path.join(d, "knowledge_cs_text_document") if run == "prealign_cs_knowledge" else None)
            cmd += ["--prealign-mode", "init", "--prealign-iters", str(iters),
                    "--prealign-words-per-batch", str(p.words_per_batch), "--data-path"] + data
        elif run == "joint_cs":  # Table 3 #2: no alignment stage, input-only codeswitched English
            cmd += ["--prealign-mode", "none", "--data-path"] + self.blend(codeswitched)
        elif run == "on_the_fly":  # Table 2: the contrastive loss at every step, no alignment stage, no codeswitching
            cmd += ["--prealign-mode", "on-the-fly", "--prealign-words-per-batch", str(p.words_per_batch),
                    "--data-path"] + self.blend(english)
        elif run in ("post", "post_low_lr"):  # Table 2: Joint Training, then the alignment stage (+ LM loss) at the end, no codeswitching
            cmd += ["--prealign-mode", "post", "--prealign-iters", str(p.post_iters),
                    "--prealign-words-per-batch", str(p.words_per_batch), "--prealign-lm-weight", "1.0"]
            if run == "post_low_lr":  # the post stage at pretraining's final LR (--min-lr) instead of re-warming to the peak
                cmd += ["--prealign-lr", str(p.lr / 10)]
            cmd += ["--data-path"] + self.blend(english)
        else:
            raise ValueError(f"unknown run {run!r}")
        return cmd

    def stage_train(self) -> None:
        p = self.p
        self.banner(4, "train", f"Joint Training, PreAlign, upper bound + no-knowledge control, {p.train_iters} iterations "
                                f"x global batch {p.global_batch_size} x {p.seq_length} tokens each, "
                                "torchrun --nproc-per-node 2 (DP=2, gloo)")
        for run in self.runs:
            ckpt = self.path("runs", run, "checkpoints")
            tracker = os.path.join(ckpt, "latest_checkpointed_iteration.txt")
            if not self.redo("train") and os.path.isfile(tracker) and _read(tracker) == str(p.train_iters):
                self.say(f"[skip] {run}: trained to iteration {p.train_iters}")
                continue
            if os.path.isdir(self.path("runs", run)):
                shutil.rmtree(self.path("runs", run))
            os.makedirs(self.path("runs", run))
            self.say(f"\n--- training {RUN_TITLES[run]} ({self.elapsed()}) ---")
            self.run(f"train_{run}", self.train_cmd(run), threads=1, prefix=f"[{run}] ")
            shutil.copyfile(os.path.join(self.logs, f"train_{run}.log"), self.path("runs", run, "train.log"))

    def eval_units(self, run: str) -> List[tuple]:
        """Every evaluation of ``run`` (its oracle control included) as units of work:
        ``[(label, kind, [(name, [output], cmd), ...])]``; the steps of a unit run in order (the
        perplexity of each checkpoint; the oracle's re-alignment, then its evaluations)."""
        p = self.p
        load = self.path("runs", run, "checkpoints")
        res = self.path("results", run)
        d = self.path("data")
        table = self.path("tables", "en_clone.jsonl")

        def clka(name: str, ckpt: str, folder: str, control: Optional[str]) -> tuple:
            out = os.path.join(folder, "clka.json")
            return (name, out, self.py("eval_clka.py") + [
                "--load", ckpt, "--test-dir", self.path("clka"), "--languages", "en_clone,en",
                "--familiarity-text", self.knowledge_text(), "--output", out] + (["--control", control] if control else []))

        def xnli(name: str, ckpt: str, folder: str) -> tuple:
            out = os.path.join(folder, "xnli.json")
            return (name, out, self.py("eval_xnli.py") + [
                "--load", ckpt, "--train-file", self.path("nli", "train.tsv"), "--dev-file", self.path("nli", "xnli.dev.tsv"),
                "--test-file", self.path("nli", "xnli.test.tsv"), "--languages", "en,en_clone",
                "--max-length", str(p.xnli_max_length), "--epochs", str(p.xnli_epochs), "--batch-size", "32", "--lr", "1e-4",
                "--seed", str(self.seed), "--output", out])

        def ppl(name: str, ckpt: str, folder: str, it: int) -> tuple:
            out = os.path.join(folder, f"perplexity_iter{it:07d}.json")
            return (name, out, self.py("eval_perplexity.py") + [
                "--load", ckpt, "--iteration", str(it), "--data-path", f"en={d}/valid_en_text_document",
                "--data-path", f"en_clone={d}/valid_en_clone_text_document", "--alignment-table", table,
                "--max-documents", str(p.ppl_max_documents), "--output", out])

        def unit(kind: str, *steps: tuple) -> tuple:
            return (f"{run} {kind}", kind, [(name, [out], cmd) for name, out, cmd in steps])

        if run == CONTROL:  # the CLKA control: what the test gives without the knowledge
            return [unit("clka", clka(f"clka_{run}", load, res, "no-knowledge"))]
        iters = list(range(p.save_interval, p.train_iters + 1, p.save_interval)) \
            if p.ppl_every_checkpoint and run in RUNS else [p.train_iters]
        units = [
            unit("perplexity", *[ppl(f"ppl_{run}_{it}", load, res, it) for it in iters]),
            unit("clka", clka(f"clka_{run}", load, res, None)),
            unit("xnli", xnli(f"xnli_{run}", load, res)),
            unit("mixed_script", (f"mixed_script_{run}", os.path.join(res, "mixed_script.json"), self.py("eval_mixed_script.py") + [
                "--load", load, "--prompt-data", f"{d}/valid_en_text_document", "--prompt-tokens", "16",
                "--num-prompts", str(p.mixed_prompts), "--max-new-tokens", str(p.mixed_new_tokens), "--batch-size", "16",
                "--languages", "en_clone", "--output", os.path.join(res, "mixed_script.json")])),
            unit("similarity", (f"similarity_{run}", os.path.join(res, "similarity.json"), self.py("eval_similarity.py") + [
                "--load", load, "--iterations", "all", "--alignment-table", table,
                "--num-batches", str(p.similarity_batches), "--words-per-batch", str(min(32, p.words_per_batch)),
                "--seq-length", str(p.seq_length), "--output", os.path.join(res, "similarity.json"),
                "--plot", os.path.join(res, "similarity.png")])),
        ]
        # The oracle re-alignment control: the same model with its clone rows set to the English
        # rows plus its own language offset -- the ceiling the evaluations can show.
        oracle_ckpt = self.path("runs", oracle_name(run), "checkpoints")
        oracle_res = self.path("results", oracle_name(run))
        units.append(unit(
            "oracle",
            (f"oracle_realign_{run}", os.path.join(oracle_ckpt, "latest_checkpointed_iteration.txt"),
             self.py("oracle_realign.py") + ["--load", load, "--save", oracle_ckpt, "--overwrite"] + self.tok_flags(clone=True)),
            clka(f"clka_{oracle_name(run)}", oracle_ckpt, oracle_res, "oracle-realign"),
            xnli(f"xnli_{oracle_name(run)}", oracle_ckpt, oracle_res)))
        return units

    def run_units(self, stage: str, units: List[tuple], workers: int = 2) -> None:
        """Run units of work on ``workers`` threads (one core each), taking them in list order.

        Each unit is ``(label, steps)``; its steps run in order, each ``(name, outputs, cmd)``
        skipped when its outputs exist. A free worker takes the next unit, so listing the long
        units first keeps both cores busy to the end. The first failure kills the other
        workers' running commands and is raised.
        """
        errors: List[BaseException] = []
        queue = list(units)
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if errors or not queue:
                        return
                    label, steps = queue.pop(0)
                try:
                    for name, outs, cmd in steps:
                        if errors:
                            return
                        if self.done(stage, outs):
                            self.say(f"[{label}] [skip] {name}: outputs exist")
                            continue
                        self.run(name, cmd, threads=1, prefix=f"[{label}] ")
                except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread)
                    errors.append(exc)
                    self.kill_children()
                    return

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def stage_evaluate(self) -> None:
        self.banner(5, "evaluate", "perplexity, CLKA + controls, zero-shot NLI, mixed-script ratio, aligned-word "
                                   "similarity, oracle re-alignment (two workers, one core each)")
        for name in list(self.runs) + [oracle_name(a) for a in self.oracle_runs]:
            if self.redo("evaluate") and os.path.isdir(self.path("results", name)):
                shutil.rmtree(self.path("results", name))  # no stale per-checkpoint results
            os.makedirs(self.path("results", name), exist_ok=True)
        # Longest units first (measured on the full preset: oracle ~80 s, perplexity ~75 s, NLI
        # ~50 s, the rest 10-20 s), so that the two workers finish together.
        order = ("oracle", "perplexity", "xnli", "similarity", "clka", "mixed_script")
        units = [u for run in self.runs for u in self.eval_units(run)]
        units.sort(key=lambda u: order.index(u[1]))  # stable: runs stay in order within a kind
        self.run_units("evaluate", [(label, steps) for label, _, steps in units])

    def stage_summary(self) -> None:
        self.banner(6, "summary", "Table 1 layout (Markdown) + PNG plots")
        summary = self.path("summary")
        plots = os.path.join(summary, "plots")
        os.makedirs(summary, exist_ok=True)
        runs = []
        for run in ARMS:
            runs += ["--run", f"{RUN_TITLES[run]}={self.path('results', run)}"]
        for run in ARMS:
            runs += ["--run", f"{RUN_TITLES[run]} + oracle={self.path('results', oracle_name(run))}"]
        runs += ["--run", f"{RUN_TITLES[CONTROL]}={self.path('results', CONTROL)}"]
        self.run("summarize", self.py("summarize_results.py") + ["--layout", "synthetic"] + runs
                 + ["--output", os.path.join(summary, "table1.md"), "--plot-dir", plots])
        self.run("summarize_ablation", self.py("summarize_results.py") + ["--layout", "ablation", "--target", "en_clone"] + runs
                 + ["--output", os.path.join(summary, "table_en_clone.md")])
        plot_training_curves(self.out, os.path.join(plots, "training_lm_loss.png"))
        p = self.p
        files = (_load(self.path("corpus", "corpus.json")) or {})
        docs = {k: (files.get("files") or {}).get(f"{k}.jsonl", {}) for k in ("en", "clone_source")}
        # the report's own plot (final_metrics.png) is written by the same command
        pngs = sorted({f for f in os.listdir(plots) if f.endswith(".png")} | {"final_metrics.png"})
        notes = [
            "± = binomial standard error of an accuracy over the test items (one seed); run `--seeds` for the spread over seeds.",
            f"Model: GPT, {p.num_layers} layers, hidden {p.hidden_size}, {p.num_heads} heads, sequence {p.seq_length}, "
            f"untied embeddings; every run {p.train_iters} iterations x global batch {p.global_batch_size} "
            f"({p.train_iters * p.global_batch_size * p.seq_length / 1e6:.2f}M tokens). PreAlign: the first {p.prealign_iters} "
            "iterations are the alignment stage (own LR schedule; optimizer reset and a new warm-up at the boundary). "
            f"Data: {docs['en'].get('documents', '?')} English documents ({docs['en'].get('words', '?')} words), "
            f"{docs['clone_source'].get('documents', '?')} En-Clone documents ({docs['clone_source'].get('words', '?')} words), "
            f"{p.clka_facts} CLKA facts. Perplexity, CLKA and NLI use held-out data (the En-Clone sets are the English ones cloned).",
            "Paper numbers: Li et al. 2024, Table 1 (150M-parameter model, 10B English + 0.1B En-Clone tokens); "
            "not comparable in scale — compare the direction of the differences.",
            "Files: `results/<run>/*.json` (one per evaluation; `<arm>_oracle/` the oracle controls), `summary/table1.md` "
            "(tools/summarize_results.py, paper layout, with the CLKA controls and per-level alignment), "
            "`summary/metrics.json`, plots in `summary/plots/`: " + ", ".join(f"`{x}`" for x in pngs) + ".",
        ]
        self.run("summarize_report", self.py("summarize_results.py") + self.report_flags(self.out) + [
            "--heading", f"# PreAlign quickstart ({self.preset_name}, seed {files.get('seed', '?')}): English -> En-Clone",
            "--ablation-caption", "Ablations (paper Tables 3 and 2; same budget; ± = binomial standard error):"]
            + [x for note in notes for x in ("--note", note)]
            + ["--output", os.path.join(summary, "README.md"), "--metrics-json", os.path.join(summary, "metrics.json"),
               "--bar-plot", os.path.join(plots, "final_metrics.png")])

    def report_flags(self, root: str) -> List[str]:
        """``tools/summarize_results.py --layout arms`` flags of this pipeline's runs, folders under ``root``."""
        res = lambda run: os.path.join(root, "results", run)  # noqa: E731
        flags = ["--layout", "arms", "--control", f"{CONTROL}={res(CONTROL)}", "--ppl-ceiling", "upper_bound",
                 "--paper-column", "Paper (Joint → PreAlign)"]
        for run in ARMS:
            flags += ["--run", f"{run}={res(run)}"]
        for run in self.ablations:
            flags += ["--ablation", f"{run}={res(run)}"]
        for run in self.oracle_runs:
            flags += ["--oracle", f"{run}={res(oracle_name(run))}", "--title", f"{run}={RUN_TITLES[run]}"]
        for key, text in PAPER_TABLE1.items():
            flags += ["--paper", f"{key}={text}"]
        if self.ablations:
            flags += ["--ablation-rows", ",".join(ablation_rows(self.ablations)),
                      "--row-title", "joint=#1 Joint Training", "--row-title", "prealign=#4 PreAlign"]
        return flags

    def summarize_seeds(self, seed_dirs: Dict[int, str]) -> None:
        """Mean ± standard deviation over the seeds' pipelines into ``{out}/README.md`` and ``metrics_seeds.json``."""
        self.run("summarize_seeds", self.py("summarize_results.py") + self.report_flags("")
                 + [x for s, d in seed_dirs.items() for x in ("--seed-dir", f"{s}={d}")] + [
            "--heading", f"# PreAlign quickstart ({self.preset_name}): mean ± standard deviation over seeds "
                         f"{', '.join(map(str, seed_dirs))}",
            "--note", "Per seed: " + ", ".join(f"`{os.path.relpath(d, self.out)}/summary/README.md`" for d in seed_dirs.values()) + ".",
            "--output", self.path("README.md"), "--metrics-json", self.path("metrics_seeds.json")])

    def kill_children(self) -> None:
        """SIGKILL the process group of every running child (each started in its own session)."""
        for proc in list(self.children):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def run_all(self) -> None:
        """Every stage in order (finished ones skipped)."""
        self.say(f"[quickstart] preset {self.preset_name}, output {self.out}, "
                 f"{'--force' if self.force else ('from stage ' + self.from_stage) if self.from_stage else 'finished stages are skipped'}")
        _write_json(self.path("config.json"), {"preset": self.preset_name, "seed": self.seed,
                                                "sizes": dataclasses.asdict(self.p), "argv": sys.argv})
        self.stage_corpus()
        self.stage_tokenizer()
        self.stage_data()
        self.stage_train()
        self.stage_evaluate()
        self.stage_summary()
        self.say(f"\n[quickstart {self.elapsed()}] done: {self.path('summary', 'README.md')}")


# ---------------------------------------------------------------------- results
def _load(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


ITER_RE = re.compile(r"iteration\s+(\d+)/\s*\d+ \| stage: (\S+) \|.*?\| lm loss: ([0-9.E+-]+)")


def training_losses(log_path: str) -> Dict[int, float]:
    """``{iteration: lm loss}`` from a pretrain_prealign.py log."""
    out: Dict[int, float] = {}
    if os.path.isfile(log_path):
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            for m in ITER_RE.finditer(fh.read()):
                out[int(m.group(1))] = float(m.group(3))
    return out


def plot_training_curves(out: str, path: str) -> None:
    """LM loss vs iteration of both runs (PreAlign's alignment stage shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from megatron_prealign.platform.files import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in ARMS:
        losses = training_losses(os.path.join(out, "runs", run, "train.log"))
        if losses:
            its = sorted(losses)
            ax.plot(its, [losses[i] for i in its], label=RUN_TITLES[run])
    cfg = _load(os.path.join(out, "config.json")) or {}
    n = (cfg.get("sizes") or {}).get("prealign_iters")
    if n:
        ax.axvspan(0, n, color="grey", alpha=0.15, label="PreAlign alignment stage")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training LM loss (blend)")
    ax.set_title("Training LM loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------- small utilities
def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _take(it, n: int, name: str):
    """The next ``n`` items of ``it`` (a shorter iterator is an error naming ``name``)."""
    for _ in range(n):
        try:
            yield next(it)
        except StopIteration:
            raise PipelineError(f"corpus generator ended early while writing {name}") from None


def _write_lines(path: str, lines) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _write_json(path: str, obj) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def main(argv: Optional[List[str]] = None) -> int:
    """Parse flags and run the pipeline (once per seed). Returns the exit status (1 on a failed stage)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--output-dir", default="quickstart_out", help="Where every output goes (default ./quickstart_out).")
    ap.add_argument("--small", action="store_true", help="Tiny sizes (< 5 minutes; the tests run this).")
    ap.add_argument("--force", action="store_true", help="Redo every stage even if its outputs exist.")
    ap.add_argument("--from-stage", choices=STAGES, default=None, help="Redo this stage and the ones after it.")
    ap.add_argument("--seed", type=int, default=1234, help="Seed of the corpus, the tasks and training.")
    ap.add_argument("--seeds", default=None,
                    help="Comma-separated seeds: the whole pipeline once per seed (into OUTPUT_DIR/seed_S), then "
                         "mean ± standard deviation over seeds in OUTPUT_DIR/README.md. Overrides --seed.")
    ap.add_argument("--ablations", default="",
                    help="Comma-separated extra runs, or 'all': " + ", ".join(ABLATIONS) + " (paper Tables 3 and 2 at "
                         "this scale, and two configurations of the method; each ~10 min more per seed).")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="Override one size of the preset (repeatable), e.g. --set knowledge_boost=20; recorded in "
                         "config.json. Results are then not the documented quickstart's.")
    args = ap.parse_args(argv)
    preset = "small" if args.small else "full"
    sizes = PRESETS[preset]
    types = {f.name: f.type for f in dataclasses.fields(Preset)}
    for item in args.set:
        field, _, value = item.partition("=")
        if field not in types or not value:
            ap.error(f"--set {item}: expected FIELD=VALUE with FIELD one of {', '.join(types)}")
        kind = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true", "yes")}[str(types[field])]
        try:
            sizes = dataclasses.replace(sizes, **{field: kind(value)})
        except ValueError:
            ap.error(f"--set {item}: {value!r} is not a valid {types[field]}")
    ablations = list(ABLATIONS) if args.ablations.strip() == "all" else [a.strip() for a in args.ablations.split(",") if a.strip()]
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        ap.error(f"--ablations {args.ablations}: unknown run(s) {', '.join(unknown)}; choose from {', '.join(ABLATIONS)} or 'all'")
    out = os.path.abspath(args.output_dir)
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else [args.seed]
    except ValueError:
        ap.error(f"--seeds {args.seeds}: expected comma-separated integers")
    if args.seeds and len(set(seeds)) != len(seeds):
        ap.error(f"--seeds {args.seeds}: a seed is repeated")
    seed_dirs = {s: (os.path.join(out, f"seed_{s}") if args.seeds else out) for s in seeds}
    for seed, folder in seed_dirs.items():
        cfg_path = os.path.join(folder, "config.json")
        if os.path.isfile(cfg_path) and not args.force:
            old = _load(cfg_path) or {}
            if old.get("preset") != preset or old.get("seed") != seed:
                ap.error(f"--output-dir {os.path.relpath(folder)} holds a {old.get('preset')} run with seed {old.get('seed')}; "
                         "use another directory or --force")
            changed = sorted(k for k, v in dataclasses.asdict(sizes).items() if old.get("sizes", {}).get(k, v) != v)
            if changed:
                ap.error(f"--output-dir {os.path.relpath(folder)} was made with other sizes ({', '.join(changed)}); "
                         "use another directory or --force")

    def _terminate(signum, frame):  # SIGTERM: stop the children (own process groups) too
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    for seed, folder in seed_dirs.items():
        pipe = Pipeline(folder, preset, args.force, args.from_stage, seed, ablations, sizes)
        try:
            pipe.run_all()
        except PipelineError as exc:
            print(f"\n[quickstart {pipe.elapsed()}] FAILED: {exc}", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt:
            pipe.kill_children()
            print(f"\n[quickstart {pipe.elapsed()}] interrupted", file=sys.stderr, flush=True)
            return 130
    if args.seeds:
        pipe = Pipeline(out, preset, args.force, args.from_stage, seeds[0], ablations, sizes)
        try:
            pipe.summarize_seeds(seed_dirs)
        except PipelineError as exc:
            print(f"\n[quickstart {pipe.elapsed()}] FAILED: {exc}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
