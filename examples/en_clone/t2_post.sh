#!/usr/bin/env bash
# Table 2 "Post alignment": joint training for 24000 steps, then 500 alignment steps with the
# additional LM loss against forgetting (--prealign-lm-weight 1), no codeswitching.
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
setup_en_clone
RUN=t2_post

prep_en_clone_base
prep_clone_target
prep_clone_table 100
prep_clone_clka
train "$RUN" --en-clone --train-iters "$((LM_ITERS + PREALIGN_ITERS))" \
    --prealign-mode post --alignment-table "$(clone_table 100)" --prealign-iters "$PREALIGN_ITERS" \
    --prealign-lm-weight 1.0 --prealign-temperature 0.1 --prealign-levels all \
    --train-data-path "$EN_WEIGHT" "$EN" "$TARGET_WEIGHT" "$CLONE" "$KNOWLEDGE_WEIGHT" "$KNOWLEDGE"
eval_en_clone "$RUN" ppl xnli clka similarity
