#!/usr/bin/env bash
# Table 5: PreAlign with the alignment table of the top PERCENT% most frequent words only
# (pre-alignment AND codeswitching use that table); 100% is t1_prealign.sh. Perplexity is split
# into words seen / unseen in that table (Fig. 6).
#   bash examples/en_clone/t5_top.sh 25      # the paper's rows: 25, 50, 75
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
PERCENT="${1:-25}"
if ! [[ "$PERCENT" =~ ^[0-9]+$ ]] || (( PERCENT < 1 || PERCENT > 100 )); then
    echo "t5_top.sh: error: PERCENT must be an integer in 1..100, got '$PERCENT'" >&2
    exit 2
fi
setup_en_clone
RUN=t5_top$PERCENT

prep_en_clone_base
prep_clone_target
prep_en_cs input-only "$PERCENT"
prep_clone_clka
train "$RUN" --en-clone --train-iters "$((LM_ITERS + PREALIGN_ITERS))" \
    --prealign-mode init --alignment-table "$(clone_table "$PERCENT")" --prealign-iters "$PREALIGN_ITERS" \
    --prealign-temperature 0.1 --prealign-lm-weight 1.0 --prealign-levels all \
    --train-data-path "$EN_WEIGHT" "$(en_cs input-only "$PERCENT")" "$TARGET_WEIGHT" "$CLONE" "$KNOWLEDGE_WEIGHT" "$KNOWLEDGE"
EVAL_TABLE="$(clone_table "$PERCENT")"
eval_en_clone "$RUN" ppl xnli clka
