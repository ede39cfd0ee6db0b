#!/usr/bin/env bash
# Table 5: PreAlign with the alignment table of the top 25% most frequent words only (pre-alignment
# AND codeswitching use that table); 100% is t1_prealign.sh. Perplexity is split into words seen /
# unseen in that table (Fig. 6).
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
setup_en_clone
RUN=t5_top25

prep_en_clone_base
prep_clone_target
prep_en_cs input-only 25
prep_clone_clka
train "$RUN" --en-clone --train-iters "$((LM_ITERS + PREALIGN_ITERS))" \
    --prealign-mode init --alignment-table "$(clone_table 25)" --prealign-iters "$PREALIGN_ITERS" \
    --prealign-temperature 0.1 --prealign-lm-weight 1.0 --prealign-levels all \
    --train-data-path "$EN_WEIGHT" "$(en_cs input-only 25)" "$TARGET_WEIGHT" "$CLONE" "$KNOWLEDGE_WEIGHT" "$KNOWLEDGE"
EVAL_TABLE="$(clone_table 25)"
eval_en_clone "$RUN" ppl xnli clka
