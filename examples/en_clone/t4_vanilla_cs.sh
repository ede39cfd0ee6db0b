#!/usr/bin/env bash
# Table 4 "Original CS": PreAlign with vanilla codeswitching (substituted subwords are also
# prediction targets). Compare English ppl + mixed-script ratio with t1_prealign.sh ("Input-only CS").
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
setup_en_clone
RUN=t4_vanilla_cs

prep_en_clone_base
prep_clone_target
prep_en_cs vanilla 100
prep_clone_clka
train "$RUN" --en-clone --train-iters "$((LM_ITERS + PREALIGN_ITERS))" \
    --prealign-mode init --alignment-table "$(clone_table 100)" --prealign-iters "$PREALIGN_ITERS" \
    --prealign-temperature 0.1 --prealign-lm-weight 1.0 --prealign-levels all \
    --train-data-path "$EN_WEIGHT" "$(en_cs vanilla 100)" "$TARGET_WEIGHT" "$CLONE" "$KNOWLEDGE_WEIGHT" "$KNOWLEDGE"
eval_en_clone "$RUN" ppl xnli clka mixed
