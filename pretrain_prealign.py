"""Pretrain a GPT with PreAlign on Megatron-Core (the counterpart of Megatron-LM's pretrain_gpt.py).

Launch with ``torchrun`` (one process per GPU; on a CPU-only machine gloo is used)::

    # PreAlign, En -> En-Clone (paper Table 1), 8 GPUs, TP=2:
    torchrun --nproc_per_node 8 pretrain_prealign.py \\
        --num-layers 12 --hidden-size 1024 --num-attention-heads 16 \\
        --seq-length 1024 --max-position-embeddings 1024 \\
        --micro-batch-size 8 --global-batch-size 1024 --train-iters 24500 \\
        --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 1000 \\
        --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --clip-grad 1.0 --bf16 \\
        --tensor-model-parallel-size 2 \\
        --tokenizer-type GPT2BPETokenizer --vocab-file gpt2/vocab.json --merge-file gpt2/merges.txt --en-clone \\
        --data-path 99 data/en_cs_text_document 1 data/clone_text_document --split 998,1,1 \\
        --prealign-mode init --alignment-table tables/en-clone.jsonl --prealign-iters 500 \\
        --save ckpt/prealign --save-interval 1000 --load ckpt/prealign \\
        --log-interval 10 --eval-interval 1000 --eval-iters 20 --tensorboard-dir tb/prealign

    # Tiny CPU smoke test (2 processes, TP=2; NullTokenizer ids, data from tools/preprocess_data.py):
    torchrun --nproc_per_node 2 pretrain_prealign.py \\
        --num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 \\
        --micro-batch-size 2 --global-batch-size 4 --train-iters 20 --lr 1e-3 \\
        --tensor-model-parallel-size 2 --tokenizer-type NullTokenizer --vocab-size 1000 \\
        --data-path /tmp/tiny_text_document --prealign-mode none --log-interval 1 --eval-interval 10 --eval-iters 2

``--train-iters`` counts the whole job: with ``--prealign-mode init`` the first
``--prealign-iters`` iterations are the pre-alignment stage (alignment loss + ``--prealign-lm-weight``
x LM loss on independently sampled LM batches), the rest are LM pretraining. A job resumes
with ``--load`` (same directory as ``--save`` is fine) at the saved iteration, stage and data
position; ``kill -9`` loses at most the iterations since the last checkpoint.

Data flags are Megatron-LM's: ``--data-path`` (a blend: ``PREFIX`` or ``W1 PREFIX1 W2 PREFIX2 ...``)
cut into train/validation/test by ``--split`` (default ``969,30,1``), or, mutually exclusive with
both, ``--train-data-path`` / ``--valid-data-path`` / ``--test-data-path`` (same blend syntax), each
split reading its own datasets whole. The per-split form keeps every training document in
training (the CLKA knowledge statements must all be seen) and validates on held-out sets::

    --train-data-path 99 data/en_cs_text_document 1 data/clone_text_document 0.01 data/clka_text_document \
    --valid-data-path 1 data/en_valid_text_document 1 data/clone_valid_text_document

(``--eval-iters`` > 0 with ``--train-data-path`` needs ``--valid-data-path``; the recipes in
``examples/`` use this form.) The paper rows below write ``--data-path`` for brevity.

The data: ``en_cs`` is English binarized with input-only codeswitching
(``tools/preprocess_data.py --codeswitch --codeswitch-mode input-only --alignment-table T``), which
writes ``{prefix}_lossmask`` next to the text; the loss on substituted targets is masked out.
Datasets without a ``_lossmask`` train on every token.

Every row of the paper's Tables 1-5 is one combination of flags (plus the data it names):

=========================  ====================================================================
Paper row                  flags (data: ``EN`` plain English, ``EN_CS`` input-only codeswitched,
                           ``EN_VCS`` vanilla codeswitched, ``TGT`` 1% target, ``TGT_FULL``)
=========================  ====================================================================
T1 Only Target             ``--prealign-mode none --data-path TGT``
T1 Joint Training          ``--prealign-mode none --data-path 99 EN 1 TGT``
T1 PreAlign                ``--prealign-mode init --alignment-table T --prealign-iters 500
                           --data-path 99 EN_CS 1 TGT``
T1 Full Target             ``--prealign-mode none --data-path TGT_FULL``
T2 On-the-fly alignment    ``--prealign-mode on-the-fly --alignment-table T --data-path 99 EN 1 TGT``
T2 Post alignment          ``--prealign-mode post --alignment-table T --prealign-iters 500
                           --prealign-lm-weight 1 --data-path 99 EN 1 TGT``
T3 #1 Joint                ``--prealign-mode none --data-path 99 EN 1 TGT``
T3 #2 Joint + CS           ``--prealign-mode none --data-path 99 EN_CS 1 TGT``
T3 #3 Joint + Init         ``--prealign-mode init --alignment-table T --prealign-iters 500
                           --data-path 99 EN 1 TGT``
T3 #4 PreAlign (all)       as T1 PreAlign
T4 Original CS             as T1 PreAlign with ``--data-path 99 EN_VCS 1 TGT``
T4 Input-only CS           as T1 PreAlign
T5 top-k% words            as T1 PreAlign with ``--alignment-table`` built from the top k% words
                           (and ``EN_CS`` codeswitched with the same table)
En-Clone upper bound       ``--en-clone --clone-perfect-init --prealign-mode none
                           --data-path 99 EN_CS 1 TGT`` (perfect alignment instead of the stage)
=========================  ====================================================================

En-Clone rows add ``--en-clone`` to the tokenizer flags (vocabulary 2V, clone id = id + V).
The contrastive loss is the paper's: ``--prealign-temperature`` (tau), ``--prealign-levels``
(default all: input embedding, every layer, output embedding), ``--prealign-words-per-batch``
source words per alignment microbatch and DP rank.

CPU vs GPU: the device comes from ``megatron_prealign.platform`` (CUDA + NCCL when present,
else CPU + gloo); nothing here special-cases either. ``--bf16`` is meant for GPUs.
"""

from __future__ import annotations

import logging
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Parse flags, check inputs, initialise parallelism and train. Returns the exit status."""
    from megatron_prealign.cli.tokenizer import build_tokenizer_from_args
    from megatron_prealign.cli.pretrain import (
        build_parser,
        config_from_args,
        noop_notices,
        parse_args,
        validate_args,
    )

    parser = build_parser()
    args = parse_args(argv, parser)
    tokenizer = build_tokenizer_from_args(args, parser)

    import torch

    from megatron_prealign.training import checkpointing
    from megatron_prealign.platform import initialize
    from megatron_prealign.training.pretrain import pretrain

    try:
        initialize(args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.seed)
        validate_args(args, world_size=torch.distributed.get_world_size())
        if torch.distributed.get_rank() == 0:
            for notice in noop_notices(args):
                print(notice, flush=True)
        clone_v = getattr(tokenizer, "base_vocab_size", None)
        if args.clone_perfect_init and clone_v is None:
            raise ValueError("--clone-perfect-init needs the En-Clone tokenizer (add --en-clone)")
        cfg = config_from_args(args, tokenizer.vocab_size, clone_base_vocab_size=clone_v)
        if args.load and checkpointing.read_latest_iteration(args.load) is not None:
            # Keep the checkpoint's vocabulary padding when it fits this run (it may have been
            # padded for another TP size); a real shape difference is reported in pretrain().
            saved = checkpointing.read_meta(args.load).get("model", {}).get("vocab_size")
            if (isinstance(saved, int) and saved >= tokenizer.vocab_size
                    and saved % args.tensor_model_parallel_size == 0
                    and saved != cfg.model.vocab_size
                    and saved < cfg.model.vocab_size + args.make_vocab_size_divisible_by * args.tensor_model_parallel_size):
                cfg.model.vocab_size = saved
        align_factory = None
        if cfg.prealign.mode != "none":
            from megatron.core import parallel_state

            from megatron_prealign.training.alignment import build_alignment_stream

            def align_factory():
                return build_alignment_stream(
                    cfg.prealign.table, tokenizer, cfg.model.vocab_size,
                    words_per_microbatch=cfg.prealign.words_per_batch,
                    micro_batch_size=cfg.training.micro_batch_size,
                    seq_length=cfg.data.seq_length,
                    seed=cfg.training.seed,
                    levels=cfg.prealign.loss.levels,
                    data_parallel_rank=parallel_state.get_data_parallel_rank(),
                    data_parallel_size=parallel_state.get_data_parallel_world_size(),
                )
        meta = {"args": {k: v for k, v in vars(args).items()}}
        pretrain(cfg, tokenizer, meta, align_stream_factory=align_factory)
    except (ValueError, FileNotFoundError) as exc:
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if rank == 0:
            print(f"pretrain_prealign.py: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        from megatron.core import parallel_state

        parallel_state.destroy_model_parallel()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
