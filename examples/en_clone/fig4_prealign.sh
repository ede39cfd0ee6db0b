#!/usr/bin/env bash
# Fig. 4, PreAlign: CLKA learning dynamics. The t1_prealign.sh row, cut into 250-step periods after
# the 500 pre-alignment steps; each period blends in new facts (in English and, other facts, in
# En-Clone) and is followed by eval_clka.py on its last checkpoint (4 train/test language pairs).
# One torchrun launch per period (FIG4_PERIODS, default 96 = the whole run).
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
setup_en_clone
RUN=fig4_prealign

prep_en_clone_base
prep_clone_target
prep_en_cs input-only 100
prep_fig4_clka "$PREALIGN_ITERS"
ROW=(--en-clone --train-iters "$((LM_ITERS + PREALIGN_ITERS))"
     --prealign-mode init --alignment-table "$(clone_table 100)" --prealign-iters "$PREALIGN_ITERS"
     --prealign-temperature 0.1 --prealign-lm-weight 1.0 --prealign-levels all)
BLEND=("$EN_WEIGHT" "$(en_cs input-only 100)" "$TARGET_WEIGHT" "$CLONE")
train_fig4 "$RUN" "$PREALIGN_ITERS"
