#!/usr/bin/env bash
# Table 1 "PreAlign" = Table 2 "PreAlign" = Table 3 #4 = Table 4 "Input-only CS" = Table 5 top 100%:
# 500 pre-alignment steps (contrastive loss at every level + LM loss) on the full En-Clone table, then
# 24000 LM steps on English with 5% input-only codeswitching + En-Clone.
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
setup_en_clone
RUN=t1_prealign

prep_en_clone_base
prep_clone_target
prep_en_cs input-only 100
prep_clone_clka
train "$RUN" --en-clone --train-iters "$((LM_ITERS + PREALIGN_ITERS))" \
    --prealign-mode init --alignment-table "$(clone_table 100)" --prealign-iters "$PREALIGN_ITERS" \
    --prealign-temperature 0.1 --prealign-lm-weight 1.0 --prealign-levels all \
    --train-data-path "$EN_WEIGHT" "$(en_cs input-only 100)" "$TARGET_WEIGHT" "$CLONE" "$KNOWLEDGE_WEIGHT" "$KNOWLEDGE"
eval_en_clone "$RUN" ppl xnli clka similarity mixed
