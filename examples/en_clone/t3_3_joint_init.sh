#!/usr/bin/env bash
# Table 3 #3 "Joint Training + Multi-Align Init" (pre-alignment stage, plain English afterwards).
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
setup_en_clone
RUN=t3_3_joint_init

prep_en_clone_base
prep_clone_target
prep_clone_table 100
prep_clone_clka
train "$RUN" --en-clone --train-iters "$((LM_ITERS + PREALIGN_ITERS))" \
    --prealign-mode init --alignment-table "$(clone_table 100)" --prealign-iters "$PREALIGN_ITERS" \
    --prealign-temperature 0.1 --prealign-lm-weight 1.0 --prealign-levels all \
    --train-data-path "$EN_WEIGHT" "$EN" "$TARGET_WEIGHT" "$CLONE" "$KNOWLEDGE_WEIGHT" "$KNOWLEDGE"
eval_en_clone "$RUN" ppl xnli clka similarity
