"""Run Megatron-LM's own checkpoint code (``megatron/training/checkpointing.py``) on a tiny GPT.

Not a test module: ``tests/test_megatron_lm_checkpoints.py`` runs it in a subprocess, so that
the import stand-ins below never reach the pytest process. Megatron-LM's training package
ships in the megatron-core wheels from 0.17 on (never in 0.16.1, the version pinned here); the
test downloads such a wheel, extracts only ``megatron/training`` and points ``--mlm-root`` at
it. Nothing of it is committed.

That package imports optional dependencies (TransformerEngine, apex, ModelOpt, nvidia-resiliency,
triton) and a few megatron-core names newer than the installed megatron-core. Those are given
inert stand-ins *for the import only* (none lies on the checkpoint path, which uses the installed
``megatron.core.dist_checkpointing`` and the model/optimizer built here); the stand-ins are
removed from ``sys.modules`` before any model is built. ``dist_checkpointing.save/load`` get
the keyword arguments the installed version knows (newer ones are dropped: ``async_strategy``,
``verify_integrity`` - defaults anyway).

Modes (arguments after ``--``: Megatron-LM flags, parsed by its own ``parse_args``):

* ``probe``: import only.
* ``load``: Megatron-LM ``load_checkpoint`` with ``--load``; writes what it restored
  (iteration, FLOPs, consumed samples, scheduler steps, the next ``torch.rand(3)``, two
  training steps' losses) to ``--out`` (JSON).
* ``save``: one training step, then Megatron-LM ``save_checkpoint`` to ``--save``; writes the
  logits of a fixed batch (eval mode), the next ``torch.rand(3)`` and two more training
  steps' losses to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import re
import sys
import types

S, B, V = 16, 2, 128
STUB_PREFIXES = ("megatron.core", "transformer_engine", "apex", "nvidia_resiliency_ext", "modelopt", "wandb",
                 "one_logger", "tensorstore", "flask", "msc", "multistorageclient", "triton")


class _Inert:
    """Stand-in for an optional dependency's names (used at import time only)."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return _Inert()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self):
        self.stubbed = []

    def find_spec(self, name, path, target=None):
        if not name.startswith(STUB_PREFIXES):
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            try:
                spec = finder.find_spec(name, path, target)
            except Exception:
                spec = None
            if spec is not None:
                return None
        self.stubbed.append(name)
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        mod = types.ModuleType(spec.name)
        mod.__path__ = []

        def getattr_(name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Inert if name[:1].isupper() else _Inert()

        mod.__getattr__ = getattr_
        return mod

    def exec_module(self, module):
        pass


def import_megatron_lm(root: str):
    """Import Megatron-LM's ``megatron.training`` from ``root`` over the installed megatron.core."""
    # Everything the model/optimizer side uses is imported before any stand-in exists, so no
    # megatron.core module binds a stand-in (e.g. attention.py's optional TE classes).
    import megatron.core  # noqa: F401
    import megatron.core.dist_checkpointing  # noqa: F401
    import megatron.core.models.gpt  # noqa: F401
    import megatron.core.optimizer  # noqa: F401
    import megatron.core.optimizer_param_scheduler  # noqa: F401
    import megatron.core.transformer  # noqa: F401

    import megatron_prealign.model.gpt  # noqa: F401
    import megatron_prealign.training.checkpointing  # noqa: F401
    import megatron_prealign.training.loop  # noqa: F401

    for name in ("megatron.core.transformer.attention", "megatron.core.models.gpt.gpt_layer_specs",
                 "megatron.core.fusions.fused_bias_dropout", "megatron.core.transformer.multi_latent_attention",
                 "megatron.core.dist_checkpointing.strategies.torch",
                 "megatron.core.dist_checkpointing.strategies.fully_parallel",
                 "megatron.core.dist_checkpointing.strategies.filesystem_async",
                 "megatron.core.dist_checkpointing.strategies.state_dict_saver",
                 "megatron.core.dist_checkpointing.exchange_utils", "megatron.core.datasets.utils",
                 "megatron.core.optimizer.layer_wise_optimizer", "megatron.core.full_cuda_graph",
                 "megatron.core.transformer.custom_layers.transformer_engine"):
        try:
            importlib.import_module(name)
        except Exception:  # optional module that needs a missing dependency: stays unimported
            pass
    before = set(sys.modules)

    sys.path.insert(0, root)  # megatron is a namespace package: this adds megatron.training
    finder = _StubFinder()
    sys.meta_path.append(finder)
    patched = []
    try:
        for _ in range(100):
            try:
                ckpt = importlib.import_module("megatron.training.checkpointing")
                break
            except ImportError as exc:
                m = re.match(r"cannot import name '(\w+)' from '([\w.]+)'", str(exc))
                if not m or not m.group(2).startswith(STUB_PREFIXES):
                    raise
                for k in [k for k in sys.modules if k.startswith("megatron.training")]:
                    del sys.modules[k]
                mod = importlib.import_module(m.group(2))
                setattr(mod, m.group(1), _Inert if m.group(1)[:1].isupper() else _Inert())
                patched.append(f"{m.group(2)}.{m.group(1)}")
        else:
            raise ImportError("too many missing names")
        arguments = importlib.import_module("megatron.training.arguments")
        global_vars = importlib.import_module("megatron.training.global_vars")
    finally:
        sys.meta_path.remove(finder)
        for name in finder.stubbed:
            sys.modules.pop(name, None)
    _shim_dist_checkpointing(ckpt)
    new_core = sorted(k for k in set(sys.modules) - before if k.startswith("megatron.core"))
    return ckpt, arguments, global_vars, {"stubbed": finder.stubbed, "patched": patched, "new_core_modules": new_core}


def _shim_dist_checkpointing(ckpt_module) -> None:
    from megatron.core import dist_checkpointing

    def drop_unknown(fn):
        known = set(inspect.signature(fn).parameters)

        def call(*a, **k):
            return fn(*a, **{key: v for key, v in k.items() if key in known})
        return call

    strategy_cls = getattr(ckpt_module, "TorchDistSaveShardedStrategy", None)
    if strategy_cls is not None and "backend" in inspect.signature(strategy_cls.__init__).parameters:
        # 0.17+ constructs it without arguments; the installed one wants (backend, version).
        ckpt_module.TorchDistSaveShardedStrategy = lambda *a, **k: strategy_cls("torch_dist", 1, *a, **k)
    load_cls = getattr(ckpt_module, "TorchDistLoadShardedStrategy", None)
    if load_cls is not None:
        known = set(inspect.signature(load_cls.__init__).parameters)
        # 0.17+ passes cache_metadata (off by default); the installed one has no such option.
        ckpt_module.TorchDistLoadShardedStrategy = lambda *a, **k: load_cls(*a, **{key: v for key, v in k.items()
                                                                                  if key in known})
    shim = types.SimpleNamespace(**{n: getattr(dist_checkpointing, n) for n in dir(dist_checkpointing)
                                    if not n.startswith("__")})
    shim.save = drop_unknown(dist_checkpointing.save)
    shim.load = drop_unknown(dist_checkpointing.load)
    ckpt_module.dist_checkpointing = shim


def _megatron_args(arguments, flags):
    sys.argv = ["pretrain_gpt.py"] + flags
    args = arguments.parse_args()
    # What validate_args / initialize derive that the checkpoint code reads.
    args.data_parallel_size = args.world_size // (args.tensor_model_parallel_size * args.pipeline_model_parallel_size)
    args.use_dist_ckpt = args.ckpt_format != "torch"
    args.padded_vocab_size = V
    args.consumed_train_samples = 0
    args.consumed_valid_samples = 0
    args.skipped_train_samples = 0
    args.params_dtype = "float32"
    return args


def _batch(seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, V, (B, S + 1), generator=g)
    return {"tokens": t[:, :-1].contiguous(), "labels": t[:, 1:].contiguous(), "loss_mask": torch.ones(B, S),
            "position_ids": torch.arange(S).expand(B, S).contiguous(),
            "attention_mask": ~torch.ones(S, S, dtype=torch.bool).tril().view(1, 1, S, S)}


def model_config():
    from megatron_prealign.model.gpt import GPTModelConfig

    return GPTModelConfig(num_layers=2, hidden_size=32, num_attention_heads=4, vocab_size=V, max_sequence_length=S)


def build(seed, samples_scheduler=False):
    """Model, optimizer and scheduler as the tests build them (Megatron-Core objects).

    With ``samples_scheduler`` the scheduler is Megatron-LM's: the same schedule counted in
    samples (steps x global batch), stepped by the global batch, and checking the checkpoint's
    values against its own (``use_checkpoint_opt_param_scheduler=False``, Megatron-LM's default).
    """
    import torch
    from megatron.core import tensor_parallel
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    from megatron_prealign.training.config import OptimConfig
    from megatron_prealign.training.loop import build_model, build_optimizer_and_scheduler

    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)
    model = build_model(model_config())
    opt, sched = build_optimizer_and_scheduler(OptimConfig(lr=1e-2, lr_warmup_iters=1), model, 10, False)
    if samples_scheduler:
        sched = OptimizerParamScheduler(
            opt, init_lr=0.0, max_lr=sched.max_lr, min_lr=sched.min_lr, lr_warmup_steps=sched.lr_warmup_steps * B,
            lr_decay_steps=sched.lr_decay_steps * B, lr_decay_style=sched.lr_decay_style, start_wd=sched.start_wd,
            end_wd=sched.end_wd, wd_incr_steps=sched.wd_incr_steps * B, wd_incr_style=sched.wd_incr_style,
            use_checkpoint_opt_param_scheduler=False, override_opt_param_scheduler=False)
        sched.samples_per_step = B
    return model, opt, sched


class _SamplesStepper:
    """What train_step sees of a samples-counting scheduler: Megatron-LM steps it by the batch."""

    def __init__(self, sched):
        self.sched = sched

    def step(self, increment):
        return self.sched.step(increment * self.sched.samples_per_step)

    def __getattr__(self, name):
        return getattr(self.sched, name)


def step(model, opt, sched, seed):
    from megatron_prealign.training.loop import train_step
    from megatron_prealign.training.stages import Stage

    if getattr(sched, "samples_per_step", None):
        sched = _SamplesStepper(sched)
    return float(train_step(Stage("lm", 1.0, 0.0), model, opt, sched, iter([_batch(seed)]), 1, S, B)[0]["lm loss"])


def logits(model, seed=7):
    import torch

    m = model[0]
    while hasattr(m, "module"):
        m = m.module
    b = _batch(seed)
    m.eval()
    with torch.no_grad():
        out = m(b["tokens"], b["position_ids"], b["attention_mask"])
    m.train()
    return out.float().tolist()


MEGATRON_FLAGS = ["--num-layers", "2", "--hidden-size", "32", "--num-attention-heads", "4",
                  "--seq-length", str(S), "--max-position-embeddings", str(S), "--micro-batch-size", str(B),
                  "--global-batch-size", str(B), "--lr", "1e-2", "--train-iters", "10",
                  "--tokenizer-type", "NullTokenizer", "--vocab-size", str(V - 1), "--ckpt-format", "torch_dist",
                  "--transformer-impl", "local", "--no-gradient-accumulation-fusion"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["probe", "load", "save"])
    p.add_argument("--mlm-root", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("--iteration", type=int, default=3)
    p.add_argument("--consumed", type=int, default=6)
    p.add_argument("--flops", type=int, default=12345)
    ns, flags = p.parse_known_args()
    flags = [f for f in flags if f != "--"]
    ckpt, arguments, global_vars, info = import_megatron_lm(ns.mlm_root)
    if ns.mode == "probe":
        print(json.dumps(info))
        return

    import torch
    from megatron.core.num_microbatches_calculator import init_num_microbatches_calculator

    from megatron_prealign.platform import initialize

    args = _megatron_args(arguments, MEGATRON_FLAGS + flags)
    global_vars.set_args(args)
    initialize(seed=None)
    init_num_microbatches_calculator(0, None, args.global_batch_size, args.micro_batch_size, args.data_parallel_size)
    out = {}
    if ns.mode == "load":
        model, opt, sched = build(99, samples_scheduler=True)  # other weights than the checkpoint's
        iteration, flops = ckpt.load_checkpoint(model, opt, sched)
        out.update(iteration=iteration, flops=flops, consumed_train_samples=args.consumed_train_samples,
                   consumed_valid_samples=args.consumed_valid_samples, num_steps=sched.num_steps,
                   rand=torch.rand(3).tolist(), logits=logits(model))
        out["losses"] = [step(model, opt, sched, s) for s in (1, 2)]
    else:
        model, opt, sched = build(1, samples_scheduler=True)
        for s in range(ns.iteration):
            step(model, opt, sched, 100 + s)
        args.consumed_train_samples = ns.consumed
        args.consumed_valid_samples = 4
        ckpt.save_checkpoint(ns.iteration, model, opt, sched, ns.flops)
        out.update(rand=torch.rand(3).tolist(), logits=logits(model), num_steps=sched.num_steps)
        out["losses"] = [step(model, opt, sched, s) for s in (1, 2)]
    torch.distributed.barrier()
    with open(ns.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
