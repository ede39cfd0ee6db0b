#!/usr/bin/env bash
# Table 6 "PreAlign", 150m: 500 pre-alignment steps on the En->{zh,de,ar,ru} table (all four languages
# at once), then 24000 LM steps on English with 5% input-only codeswitching + the four targets.
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
MODEL_SIZE=150m
setup_real
RUN=t6_prealign_150m

prep_real
prep_real_cs
real_targets
train "$RUN" --train-iters "$((LM_ITERS + PREALIGN_ITERS))" \
    --prealign-mode init --alignment-table "$TABLE" --prealign-iters "$PREALIGN_ITERS" \
    --prealign-temperature 0.1 --prealign-lm-weight 1.0 --prealign-levels all \
    --train-data-path "$EN_WEIGHT" "$EN_CS" "${REAL_TARGETS[@]}"
eval_real "$RUN"
