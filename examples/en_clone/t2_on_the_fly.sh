#!/usr/bin/env bash
# Table 2 "On-the-fly alignment": joint training + the contrastive alignment loss at every step
# (weight 1, independently sampled word batches), no codeswitching.
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
setup_en_clone
RUN=t2_on_the_fly

prep_en_clone_base
prep_clone_target
prep_clone_table 100
prep_clone_clka
train "$RUN" --en-clone --train-iters "$LM_ITERS" \
    --prealign-mode on-the-fly --alignment-table "$(clone_table 100)" --prealign-align-weight 1.0 \
    --prealign-temperature 0.1 --prealign-levels all \
    --train-data-path "$EN_WEIGHT" "$EN" "$TARGET_WEIGHT" "$CLONE" "$KNOWLEDGE_WEIGHT" "$KNOWLEDGE"
eval_en_clone "$RUN" ppl xnli clka similarity
