"""Flags of pretrain_prealign.py: Megatron names, validation errors, conversion to configs."""

from __future__ import annotations

import shlex

import pytest

from megatron_prealign.cli.pretrain import (
    build_parser,
    config_from_args,
    padded_vocab_size,
    parse_blend,
    validate_args,
)
from megatron_prealign.model.prealign import parse_levels

MODEL = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --micro-batch-size 2 "
         "--train-iters 100 --lr 3e-4 --tokenizer-type NullTokenizer --vocab-size 1000 ")
BASE = MODEL + "--data-path d "


def parse(extra: str, world_size: int = 1, base: str = BASE):
    args = build_parser().parse_args(shlex.split(base + extra))
    validate_args(args, world_size=world_size)
    return args


@pytest.mark.parametrize("items", [
    ["a"], ["99", "en", "1", "tgt"], ["en", "tgt"], ["a", "b", "c"], ["99", "en", "1"],
    ["en", "99", "tgt", "1"], ["0.5", "x/en", "2e-1", "x/tgt"],
])
def test_blend_syntax_is_megatrons(items):
    """Same answer as megatron-core's own get_blend_from_list (prefixes alone or weight-prefix pairs)."""
    from megatron.core.datasets.utils import get_blend_from_list

    prefixes, weights = get_blend_from_list(items)
    assert parse_blend(items) == (list(prefixes), None if weights is None else [float(w) for w in weights])


def test_blend_errors_name_the_flag():
    with pytest.raises(ValueError, match="--data-path: 'tgt' is not a weight"):
        parse_blend(["1", "en", "tgt", "x"])
    with pytest.raises(ValueError, match="positive"):
        parse_blend(["0", "en", "1", "tgt"])


def test_levels():
    assert parse_levels("all") is None
    assert parse_levels("3,0,3,1") == [0, 1, 3]
    for bad in ("x", "-1", ""):
        with pytest.raises(ValueError, match="--prealign-levels"):
            parse_levels(bad)


def test_vocab_padding_matches_megatron():
    assert padded_vocab_size(50257, 128, 1) == 50304
    assert padded_vocab_size(50257, 128, 2) == 50432
    assert padded_vocab_size(1001, 128, 1) == 1024


def test_megatron_flags_convert_to_typed_config():
    args = parse("--ffn-hidden-size 96 --global-batch-size 8 --min-lr 3e-5 --lr-decay-style cosine "
                 "--lr-warmup-iters 10 --lr-decay-iters 90 --weight-decay 0.1 --adam-beta1 0.8 --adam-beta2 0.95 "
                 "--clip-grad 0.5 --split 98,1,1 --save s --load l --save-interval 10 --log-interval 5 "
                 "--eval-interval 50 --eval-iters 3 --tensor-model-parallel-size 2 --sequence-parallel --bf16 "
                 "--seed 7 --untie-embeddings-and-output-weights --hidden-dropout 0.0 --attention-dropout 0.05 "
                 "--tensorboard-dir tb --exit-interval 40 --prealign-mode init --prealign-table t.jsonl "
                 "--prealign-iters 5 --prealign-temperature 0.2 --prealign-levels 0,1 --prealign-lm-weight 0.5 "
                 "--prealign-words-per-batch 16", world_size=4)
    cfg = config_from_args(args, vocab_size=1001)
    assert cfg.model.vocab_size == 1024 and cfg.model.ffn_hidden_size == 96
    assert cfg.model.untie_embeddings_and_output_weights and cfg.model.bf16 and cfg.model.sequence_parallel
    assert cfg.model.max_sequence_length == 32 and cfg.model.attention_dropout == 0.05
    assert cfg.parallel.tensor_model_parallel_size == 2
    assert cfg.training.global_batch_size == 8 and cfg.training.exit_interval == 40 and cfg.training.seed == 7
    assert (cfg.optim.min_lr, cfg.optim.lr_warmup_iters, cfg.optim.lr_decay_iters) == (3e-5, 10, 90)
    assert (cfg.optim.adam_beta1, cfg.optim.adam_beta2, cfg.optim.clip_grad) == (0.8, 0.95, 0.5)
    assert cfg.data.blend == (["d"], None) and cfg.data.split == "98,1,1"
    assert cfg.checkpoint.save == "s" and cfg.checkpoint.save_interval == 10
    p = cfg.prealign
    assert (p.mode, p.table, p.iters, p.loss.temperature, p.loss.levels, p.loss.lm_weight, p.words_per_batch) == (
        "init", "t.jsonl", 5, 0.2, [0, 1], 0.5, 16)
    assert cfg.logging.tensorboard_dir == "tb"
    assert cfg.to_dict()["prealign"]["mode"] == "init"


def test_global_batch_defaults_to_micro_times_dp():
    args = parse("--prealign-mode none --tensor-model-parallel-size 2", world_size=8)
    assert args.global_batch_size == 2 * 4


PRE = "--prealign-mode init --prealign-table t.jsonl --prealign-iters 5 "


@pytest.mark.parametrize("extra, world, message", [
    ("--prealign-mode init --prealign-iters 3", 1, "--prealign-table"),
    ("--prealign-mode init --prealign-table t", 1, "--prealign-iters"),
    ("--prealign-mode post --prealign-table t --prealign-iters 101", 1, "exceeds --train-iters"),
    ("--prealign-mode none --prealign-iters 3", 1, "no effect"),
    ("--prealign-mode none --tensor-model-parallel-size 3", 3, "--num-attention-heads"),
    ("--prealign-mode none --pipeline-model-parallel-size 4", 4, "--num-layers"),
    ("--prealign-mode none --sequence-parallel", 1, "--sequence-parallel"),
    ("--prealign-mode none --global-batch-size 6", 2, "--global-batch-size"),
    ("--prealign-mode none --tensor-model-parallel-size 2", 3, "world size"),
    ("--prealign-mode none --seq-length 64 --max-position-embeddings 32", 1, "--max-position-embeddings"),
    ("--prealign-mode on-the-fly --prealign-table t --prealign-words-per-batch 1", 1, "at least 2 words"),
    ("--prealign-mode on-the-fly --prealign-table t --prealign-temperature 0", 1, "--prealign-temperature"),
    ("--prealign-mode none --save-interval 10", 1, "--save"),
    (PRE + "--prealign-lr-warmup-iters 5", 1, "--prealign-lr-warmup-iters"),
    (PRE + "--prealign-lr 0", 1, "--prealign-lr"),
    (PRE + "--prealign-min-lr 1", 1, "--prealign-min-lr"),
    (PRE + "--prealign-weight -1", 1, "--prealign-weight"),
])
def test_bad_flag_combinations_name_the_flag(extra, world, message):
    with pytest.raises(ValueError, match=message):
        parse(extra, world_size=world)


def test_data_path_defaults_to_megatrons_split():
    cfg = config_from_args(parse("--prealign-mode none"), vocab_size=1000)
    assert cfg.data.blend == (["d"], None) and cfg.data.split == "969,30,1" and cfg.data.blend_per_split is None


def test_per_split_data_paths_convert_to_blend_per_split():
    args = parse("--prealign-mode none --train-data-path 99 en_cs 1 tgt 0.01 facts --valid-data-path 1 en_v 1 tgt_v "
                 "--test-data-path test", base=MODEL)
    cfg = config_from_args(args, vocab_size=1000)
    assert cfg.data.blend is None and cfg.data.split is None and cfg.data.per_split
    assert cfg.data.blend_per_split == [(["en_cs", "tgt", "facts"], [99.0, 1.0, 0.01]),
                                        (["en_v", "tgt_v"], [1.0, 1.0]), (["test"], None)]
    # no validation data is fine when nothing is validated
    cfg = config_from_args(parse("--prealign-mode none --train-data-path t --eval-iters 0", base=MODEL), 1000)
    assert cfg.data.blend_per_split == [(["t"], None), None, None]
    cfg = config_from_args(parse("--prealign-mode none --train-data-path t --eval-interval 0", base=MODEL), 1000)
    assert cfg.data.blend_per_split[1] is None


@pytest.mark.parametrize("extra, message", [
    ("--data-path d --train-data-path t", "--data-path and --train-data-path are mutually exclusive"),
    ("--data-path d --valid-data-path v", "--data-path and --valid-data-path are mutually exclusive"),
    ("--valid-data-path v", "--valid-data-path needs --train-data-path"),
    ("--test-data-path x --eval-iters 0", "--test-data-path needs --train-data-path"),
    ("", "give --data-path or --train-data-path"),
    ("--train-data-path t", "--eval-iters 100 needs validation data: add --valid-data-path"),
    ("--train-data-path t --valid-data-path v --split 98,2,0", "--split 98,2,0 applies to --data-path only"),
    ("--train-data-path 1 t x u", "--train-data-path: 'x' is not a weight"),
    ("--train-data-path t --valid-data-path 1 v w 2", "--valid-data-path: 'w' is not a weight"),
])
def test_bad_data_flags_name_the_flag(extra, message):
    with pytest.raises(ValueError, match=message) as err:
        parse("--prealign-mode none " + extra, base=MODEL)
    assert "\n" not in str(err.value)


def test_parse_args_reports_data_flag_errors_on_one_line(capsys):
    from megatron_prealign.cli.pretrain import parse_args

    with pytest.raises(SystemExit):
        parse_args(shlex.split(MODEL + "--prealign-mode none --data-path d --train-data-path t"))
    assert "--data-path and --train-data-path are mutually exclusive" in capsys.readouterr().err


PAPER_ROWS = {
    "only target": "--prealign-mode none --data-path TGT",
    "joint": "--prealign-mode none --data-path 99 EN 1 TGT",
    "prealign": "--prealign-mode init --prealign-table T --prealign-iters 5 --data-path 99 EN_CS 1 TGT",
    "on-the-fly": "--prealign-mode on-the-fly --prealign-table T --data-path 99 EN 1 TGT",
    "post": "--prealign-mode post --prealign-table T --prealign-iters 5 --prealign-lm-weight 1 --data-path 99 EN 1 TGT",
    "joint+cs": "--prealign-mode none --data-path 99 EN_CS 1 TGT",
    "init only": "--prealign-mode init --prealign-table T --prealign-iters 5 --data-path 99 EN 1 TGT",
    "clone upper bound": "--en-clone --clone-perfect-init --prealign-mode none --data-path 99 EN_CS 1 TGT",
}


@pytest.mark.parametrize("row", sorted(PAPER_ROWS))
def test_every_paper_row_is_a_valid_flag_combination(row):
    args = parse(PAPER_ROWS[row])
    cfg = config_from_args(args, vocab_size=2002 if args.en_clone else 1001,
                           clone_base_vocab_size=1001 if args.en_clone else None)
    assert cfg.prealign.mode == args.prealign_mode


def test_paper_rows_are_in_the_entry_point_docstring():
    import pathlib

    doc = (pathlib.Path(__file__).resolve().parents[1] / "pretrain_prealign.py").read_text()
    for flag in ("--prealign-mode on-the-fly", "--prealign-mode post", "--clone-perfect-init", "EN_VCS"):
        assert flag in doc


def test_prealign_schedule_and_weighting_flags():
    pre = "--prealign-mode init --prealign-table t.jsonl --prealign-iters 5 "
    cfg = config_from_args(parse(pre), vocab_size=1000).prealign
    # defaults: the paper's stage boundary, its Eq. 3 sum over levels, weight 1
    assert (cfg.schedule, cfg.loss.level_reduction, cfg.loss.align_weight, cfg.loss.lm_weight) == (
        "separate", "sum", 1.0, 1.0)
    assert (cfg.lr, cfg.min_lr, cfg.lr_warmup_iters, cfg.lr_decay_style) == (None, None, None, None)
    cfg = config_from_args(parse(pre + "--prealign-schedule shared --prealign-weight 0.1 "
                                 "--prealign-level-reduction mean --prealign-lr 1e-3 --prealign-min-lr 1e-5 "
                                 "--prealign-lr-warmup-iters 2 --prealign-lr-decay-style linear"),
                           vocab_size=1000).prealign
    assert (cfg.schedule, cfg.loss.level_reduction, cfg.loss.align_weight) == ("shared", "mean", 0.1)
    assert (cfg.lr, cfg.min_lr, cfg.lr_warmup_iters, cfg.lr_decay_style) == (1e-3, 1e-5, 2, "linear")
    # the old name stays an alias
    assert parse(pre + "--prealign-align-weight 0.3").prealign_align_weight == 0.3
