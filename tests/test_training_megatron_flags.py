"""Megatron-LM command lines are accepted as is (issue 10): the GPT-3 345M and 175B examples'
flags plus PreAlign's, Megatron-LM's defaults, new flags' meaning, no-op notices, --use-checkpoint-args,
the start-up lines and TensorBoard series names."""

from __future__ import annotations

import argparse
import json
import os
import shlex

import pytest

from megatron_prealign.cli.pretrain import (
    NOOP_FLAGS,
    build_parser,
    config_from_args,
    noop_notices,
    parse_args,
    resolve_train_iters,
    validate_args,
)

# examples/pretrain_gpt.sh of Megatron-LM (GPT-3 345M), verbatim flags; paths are placeholders.
GPT_345M = """
    --tensor-model-parallel-size 1 --pipeline-model-parallel-size 1
    --num-layers 24 --hidden-size 1024 --num-attention-heads 16 --seq-length 1024 --max-position-embeddings 1024
    --micro-batch-size 4 --global-batch-size 8 --lr 0.00015 --train-iters 500000 --lr-decay-iters 320000
    --lr-decay-style cosine --min-lr 1.0e-5 --weight-decay 1e-2 --lr-warmup-fraction .01 --clip-grad 1.0 --fp16
    --data-path my-gpt2_text_document --vocab-file gpt2-vocab.json --merge-file gpt2-merges.txt --split 949,50,1
    --log-interval 100 --save-interval 10000 --eval-interval 1000 --eval-iters 10
    --distributed-backend nccl --save ckpt --load ckpt
    --use-mcore-models --no-masked-softmax-fusion --use-flash-attn --use-distributed-optimizer
    --overlap-grad-reduce --recompute-activations --exit-duration-in-mins 230 --exit-signal-handler
    --tensorboard-dir tb --log-world-size-to-tensorboard --wandb-project p --wandb-exp-name e
"""
# examples/gpt3/train_gpt3_175b_distributed.sh (model, training and parallel flags).
GPT_175B = """
    --num-layers 96 --hidden-size 12288 --num-attention-heads 96 --seq-length 2048 --max-position-embeddings 2048
    --attention-backend auto --micro-batch-size 1 --global-batch-size 1536 --rampup-batch-size 16 16 5859375
    --train-iters 500000 --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --init-method-std 0.006
    --clip-grad 1.0 --fp16 --lr 6.0e-5 --lr-decay-style cosine --min-lr 6.0e-6 --lr-warmup-fraction .001
    --lr-decay-iters 430000 --tensor-model-parallel-size 8 --pipeline-model-parallel-size 16
    --data-path a_text_document b_text_document --vocab-file v.json --merge-file m.txt --split 949,50,1
    --log-interval 100 --save-interval 10000 --eval-interval 1000 --save c --load c --eval-iters 10
    --tensorboard-dir tb
"""
PREALIGN = " --prealign-mode init --prealign-table t.jsonl --prealign-iters 500 --prealign-words-per-batch 256"


def _parse(text: str, world_size=None):
    args = build_parser().parse_args(shlex.split(text))
    validate_args(args, world_size=world_size)
    return args


def test_gpt3_345m_command_line_plus_prealign_is_accepted_as_is():
    args = parse_args(shlex.split(GPT_345M + " --recompute-activations" + PREALIGN))
    validate_args(args, world_size=2)
    assert args.tokenizer_type == "GPT2BPETokenizer"  # inferred from --vocab-file/--merge-file
    assert args.recompute_granularity == "selective"
    cfg = config_from_args(args, vocab_size=50257)
    assert cfg.model.vocab_size == 50304  # Megatron's padding to a multiple of 128
    assert cfg.model.fp16 and cfg.optim.fp16 and cfg.optim.initial_loss_scale == 2.0 ** 32
    assert cfg.optim.use_distributed_optimizer and cfg.parallel.overlap_grad_reduce
    assert cfg.optim.lr_decay_style == "cosine" and cfg.optim.lr_decay_iters == 320000
    assert cfg.optim.lr_warmup_iters == 3200  # .01 x lr-decay-iters, as Megatron-LM
    assert cfg.data.blend == (["my-gpt2_text_document"], None) and cfg.data.split == "949,50,1"
    assert cfg.training.exit_duration_in_mins == 230 and cfg.training.exit_signal_handler
    assert cfg.logging.wandb_project == "p" and cfg.logging.wandb_save_dir == os.path.join("ckpt", "wandb")
    assert cfg.logging.log_world_size and cfg.prealign.iters == 500
    notices = noop_notices(args)
    assert len(notices) == 4 and all(n.startswith("notice: --") and "\n" not in n for n in notices)
    assert any("--use-mcore-models" in n for n in notices) and any("--distributed-backend" in n for n in notices)


def test_gpt3_175b_command_line_with_rampup_is_accepted():
    args = _parse(GPT_175B + PREALIGN, world_size=8 * 16 * 4)
    cfg = config_from_args(args, vocab_size=50257)
    assert cfg.training.rampup_batch_size == [16, 16, 5859375]
    assert cfg.data.blend == (["a_text_document", "b_text_document"], None)  # prefixes without weights
    assert cfg.optim.lr_warmup_iters == 430  # .001 x 430000
    assert cfg.model.vocab_size == 51200  # multiple of 128 x TP 8


def test_defaults_are_megatron_lms():
    """Values of Megatron-LM's arguments.py (0.19: training/config/training_config.py, arguments.py)."""
    args = _parse("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --micro-batch-size 1 "
                  "--train-iters 10 --lr 1e-3 --tokenizer-type NullTokenizer --vocab-size 100 --data-path d "
                  "--prealign-mode none")
    expected = dict(lr_decay_style="linear", eval_interval=1000, eval_iters=100, log_interval=100,
                    initial_loss_scale=2.0 ** 32, min_loss_scale=1.0, loss_scale_window=1000, hysteresis=2,
                    loss_scale=None, num_query_groups=1, recompute_num_layers=1, lr_warmup_init=0.0,
                    weight_decay=0.01, clip_grad=1.0, adam_beta2=0.999, make_vocab_size_divisible_by=128,
                    split="969,30,1", seed=1234, min_lr=0.0, lr_warmup_iters=0)
    assert {k: getattr(args, k) for k in expected} == expected


BASE = ("--num-layers 2 --hidden-size 96 --num-attention-heads 4 --seq-length 32 --micro-batch-size 2 "
        "--lr 1e-3 --tokenizer-type NullTokenizer --vocab-size 100 --data-path d ")


def test_swiglu_and_gqa_reach_the_transformer_config(single_process_parallel_state):
    args = _parse(BASE + "--train-iters 10 --swiglu --group-query-attention --num-query-groups 2 --prealign-mode none")
    cfg = config_from_args(args, vocab_size=100)
    assert cfg.model.ffn_hidden_size == int((4 * 96 * 2 / 3) / 64) * 64 == 256
    assert cfg.model.swiglu and cfg.model.num_query_groups == 2
    from megatron_prealign.model.gpt import make_transformer_config

    tc = make_transformer_config(cfg.model)
    assert tc.gated_linear_unit and tc.activation_func.__name__ == "silu" and tc.num_query_groups == 2
    plain = config_from_args(_parse(BASE + "--train-iters 10 --prealign-mode none"), vocab_size=100)
    assert plain.model.num_query_groups is None and plain.model.ffn_hidden_size is None


@pytest.mark.parametrize("extra, message", [
    ("--train-iters 10 --group-query-attention --num-query-groups 3", "--num-query-groups 3 must divide"),
    ("--train-iters 10 --bf16 --fp16", "--bf16 and --fp16"),
    ("--train-iters 10 --recompute-granularity full", "--recompute-method"),
    ("--train-iters 10 --recompute-method block", "needs --recompute-granularity full"),
    ("--train-iters 10 --recompute-granularity full --recompute-method uniform --prealign-mode init "
     "--prealign-table t --prealign-iters 2", "--recompute-granularity full cannot run the --prealign-mode init"),
    ("--train-iters 10 --train-samples 100", "mutually exclusive"),
    ("", "give --train-iters or --train-samples"),
    ("--train-iters 10 --lr-warmup-fraction 0.1 --lr-warmup-iters 3", "--lr-warmup-fraction"),
    ("--train-iters 10 --rampup-batch-size 2 2 100", "--rampup-batch-size needs --global-batch-size"),
    ("--train-iters 10 --use-checkpoint-args", "--use-checkpoint-args needs --load"),
])
def test_bad_new_flag_combinations_name_the_flag(extra, message):
    with pytest.raises(ValueError, match=message):
        _parse(BASE + extra + ("" if "prealign-mode" in extra else " --prealign-mode none"))


def test_full_recompute_is_fine_without_alignment():
    args = _parse(BASE + "--train-iters 10 --recompute-granularity full --recompute-method block "
                  "--recompute-num-layers 2 --prealign-mode none")
    cfg = config_from_args(args, vocab_size=100)
    assert (cfg.model.recompute_granularity, cfg.model.recompute_method, cfg.model.recompute_num_layers) == (
        "full", "block", 2)


def _megatron_iterations(train_samples, gbs, mbs, dp, rampup):
    """Iterations to consume ``train_samples`` with megatron-core's own ramp-up calculator."""
    from megatron.core.num_microbatches_calculator import RampupBatchsizeNumMicroBatchesCalculator

    calc = RampupBatchsizeNumMicroBatchesCalculator(gbs, mbs, dp, False, 0, *rampup)
    consumed, iters = 0, 0
    while consumed < train_samples:
        calc.update(consumed, consistency_check=False)
        consumed += calc.get_current_global_batch_size()
        iters += 1
    return iters, consumed


@pytest.mark.parametrize("samples, gbs, rampup", [(1000, 32, [8, 8, 200]), (5000, 64, [16, 16, 1000]),
                                                  (640, 32, None), (10000, 48, [16, 16, 3000])])
def test_train_samples_become_megatrons_iterations(samples, gbs, rampup):
    iters = resolve_train_iters(samples, gbs, rampup)
    if rampup is None:
        assert iters == samples // gbs
        return
    ref_iters, ref_consumed = _megatron_iterations(samples, gbs, 8, 1, rampup)
    # Megatron-LM stops at whole global batches after the ramp: at most one batch short.
    assert ref_iters - 1 <= iters <= ref_iters
    args = _parse(BASE.replace("--micro-batch-size 2", "--micro-batch-size 8") +
                  f"--train-samples {samples} --global-batch-size {gbs} --rampup-batch-size {' '.join(map(str, rampup))}"
                  " --lr-warmup-fraction 0.1 --prealign-mode none", world_size=1)
    assert args.train_iters == iters
    cfg = config_from_args(args, vocab_size=100)
    # the decay spans the LM stage (None = its own length): it ends with the last sample, as Megatron-LM's
    assert cfg.optim.lr_decay_iters is None
    from megatron_prealign.training.stages import schedule_segments

    (segment,) = schedule_segments(cfg.training.train_iters, cfg.prealign, cfg.optim)
    assert segment.decay_iters == iters
    assert cfg.optim.lr_warmup_iters == resolve_train_iters(int(0.1 * samples), gbs, rampup)


def test_use_checkpoint_args_takes_the_model_shape(tmp_path):
    import torch

    ours = tmp_path / "ours"
    (ours / "iter_0000010").mkdir(parents=True)
    (ours / "latest_checkpointed_iteration.txt").write_text("10")
    (ours / "iter_0000010" / "prealign_meta.json").write_text(json.dumps(
        {"args": {"num_layers": 3, "hidden_size": 48, "num_attention_heads": 6, "seq_length": 16,
                  "max_position_embeddings": 64, "swiglu": True, "tokenizer_type": "NullTokenizer",
                  "vocab_size": 77, "lr": 9.0}}))
    args = parse_args(shlex.split("--micro-batch-size 1 --train-iters 5 --lr 1e-4 --data-path d "
                                  f"--prealign-mode none --use-checkpoint-args --load {ours} --num-layers 12"))
    assert (args.num_layers, args.hidden_size, args.num_attention_heads, args.seq_length) == (3, 48, 6, 16)
    assert args.swiglu and args.tokenizer_type == "NullTokenizer" and args.vocab_size == 77
    assert args.lr == 1e-4  # training flags stay the command line's

    mlm = tmp_path / "mlm"  # Megatron-LM torch_dist layout: args in common.pt
    (mlm / "iter_0000020").mkdir(parents=True)
    (mlm / "latest_checkpointed_iteration.txt").write_text("20")
    ns = argparse.Namespace(num_layers=4, hidden_size=64, num_attention_heads=8, seq_length=32,
                            max_position_embeddings=32, tokenizer_type="NullTokenizer", vocab_size=50)
    torch.save({"args": ns, "iteration": 20}, mlm / "iter_0000020" / "common.pt")
    args = parse_args(shlex.split(f"--micro-batch-size 1 --train-iters 5 --lr 1e-4 --data-path d --prealign-mode none "
                                  f"--use-checkpoint-args --load {mlm}"))
    assert (args.num_layers, args.hidden_size, args.seq_length, args.vocab_size) == (4, 64, 32, 50)


def test_noop_flags_are_accepted_with_one_line_each():
    flags = " ".join(NOOP_FLAGS)
    args = _parse(BASE + "--train-iters 10 --prealign-mode none " + flags + " --timing-log-level 2")
    notices = noop_notices(args)
    assert len(notices) == len(NOOP_FLAGS) + 1
    assert noop_notices(_parse(BASE + "--train-iters 10 --prealign-mode none")) == []


def test_cuda_only_features_fail_on_cpu_with_one_line():
    from megatron_prealign.training.pretrain import check_device_support

    for extra, flag in (("--use-distributed-optimizer", "--use-distributed-optimizer needs CUDA"),
                        ("--fp16", "--fp16 needs CUDA")):
        cfg = config_from_args(_parse(BASE + "--train-iters 10 --prealign-mode none " + extra), vocab_size=100)
        with pytest.raises(ValueError, match=flag) as err:
            check_device_support(cfg, cuda=False)
        assert "\n" not in str(err.value)
        check_device_support(cfg, cuda=True)


def test_arguments_dump_is_megatrons_format():
    from megatron_prealign.training.pretrain import format_args_dump

    text = format_args_dump({"num_layers": 2, "lr": 0.1, "Adam_beta1": 0.9})
    lines = text.splitlines()
    assert lines[0] == "------------------------ arguments ------------------------"
    assert lines[-1] == "-------------------- end of arguments ---------------------"
    assert lines[1] == "  Adam_beta1 " + "." * 38 + " 0.9"  # sorted case-insensitively, 48-name dots
    assert lines[2:4] == ["  lr " + "." * 46 + " 0.1", "  num_layers " + "." * 38 + " 2"]


def test_tensorboard_series_are_megatrons(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from megatron_prealign.training.metrics import IntervalLogger

    log = IntervalLogger(10, 1, str(tmp_path / "tb"), printer=lambda s: None, log_world_size=True)
    log.add_iteration(0.1, 100, {"lm loss": 2.5})
    line = log.emit(1, 48, "lm", 1e-3, 48, 0.5, loss_scale=4096.0, world_size=2)
    assert "loss scale: 4096.0" in line
    log.scalar("lm loss validation", 2.0, 1, 48)
    log.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for name in ("lm loss", "learning-rate", "batch-size", "loss-scale", "world-size", "grad-norm",
                 "lm loss validation"):
        assert name in tags and f"{name} vs samples" in tags, (name, tags)
    assert acc.Scalars("lm loss vs samples")[0].step == 48 and acc.Scalars("loss-scale")[0].value == 4096.0
    assert acc.Scalars("world-size")[0].value == 2


def test_wandb_without_the_package_is_a_notice(monkeypatch):
    import builtins

    from megatron_prealign.training.metrics import open_wandb

    real_import = builtins.__import__

    def no_wandb(name, *a, **k):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    lines = []
    assert open_wandb("proj", None, None, {}, lines.append) is None
    assert lines == ["notice: --wandb-project proj: the wandb package is not importable; not logging to W&B"]
    assert open_wandb(None, None, None, {}, lines.append) is None and len(lines) == 1
