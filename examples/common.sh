# shellcheck shell=bash
# Shared launcher for the paper recipes in examples/ (sourced by every recipe; not run directly).
#
# A recipe = data preparation (skipped when its output exists) -> one pretrain_prealign.py job
# (torchrun, locally or under SLURM via examples/slurm/launch.sbatch) -> evaluation JSONs in
# $RESULTS_DIR/<run>/ that tools/summarize_results.py turns into the paper's tables
# (examples/summarize_tables.sh).
#
# Dry run: `DRY_RUN=1 bash examples/en_clone/t1_prealign.sh` or `... --dry-run` prints every command
# (data preparation, torchrun, evaluation) instead of running it; needs no GPU, data or SLURM.
#
# Environment (defaults in brackets; every path may be relative to the directory you launch from):
#   DATA_DIR         binarized data, tables, tokenizers, CLKA sets [./prealign_data]
#   RAW_DIR          raw CulturaX parquet shards, one folder per language and split:
#                    $RAW_DIR/{en,zh,de,ar,ru}/{train,valid}/*.parquet; En-Clone's 100M-token source
#                    is $RAW_DIR/en/clone/*.parquet (English documents NOT in en/train) [$DATA_DIR/raw]
#   CKPT_DIR         checkpoints (+ TensorBoard) per run [./prealign_ckpt]
#   RESULTS_DIR      evaluation JSONs per run [./prealign_results]
#   TOKENIZER        folder with vocab.json + merges.txt (GPT2BPETokenizer). En-Clone: GPT-2's files
#                    [$DATA_DIR/tokenizers/gpt2]; real languages: [$DATA_DIR/tokenizers/bpe64k_multi].
#                    Trained with tools/train_tokenizer.py when the folder has no merges.txt.
#   EVAL_DIR         XNLI-1.0/xnli.{dev,test}.tsv and multinli_1.0/multinli_1.0_train.jsonl [$DATA_DIR/eval]
#   DICT_DIR         real languages: bilingual dictionaries en-{zh,de,ar,ru}.txt (MUSE format, or
#                    PreAlign JSONL en-{lang}.jsonl) [$DATA_DIR/dictionaries]
#   MODEL_SIZE       150m | 400m | 1.3b (see model_flags) [150m]
#   GPUS_PER_NODE    GPUs (= torchrun processes) per node [8]
#   NNODES           nodes; under SLURM $SLURM_NNODES [1]
#   LAUNCHER         local (torchrun) | slurm (srun + torchrun, c10d rendezvous); launch.sbatch sets slurm
#   MASTER_ADDR/MASTER_PORT  c10d rendezvous endpoint (SLURM: first node of the job) [localhost/29500]
#   TP, PP           tensor / pipeline parallel size [1 / 1]
#   MICRO_BATCH_SIZE per-GPU micro batch [16 / 8 / 4 for 150m / 400m / 1.3b]
#   GLOBAL_BATCH_SIZE sequences per step; x SEQ_LENGTH 1024 = 1,048,576 tokens (paper: ~1M) [1024]
#   LM_ITERS         language-pretraining steps (paper: ~24000) [24000]
#   PREALIGN_ITERS   pre-alignment (or post-alignment) steps (paper: ~500) [500]
#   SAVE_INTERVAL    checkpoint every N steps (Fig. 5 uses every 250) [250 En-Clone / 1000 real]
#   WORKERS          preprocessing worker processes / threads [16]
#   STAGES           comma-separated subset of data,train,eval [data,train,eval]
#   PYTHON           Python interpreter [python]
#   PRECISION        bf16 | fp32 (fp32 for CPU smoke runs) [bf16]
#   FIG4_PERIODS     Fig. 4 recipes: number of 250-step knowledge periods [LM_ITERS / 250 = 96]
#   EXTRA_ARGS       appended verbatim to the pretrain_prealign.py flags []
#   DRY_RUN          1 = print commands instead of running them [0]

set -euo pipefail

for _pa_arg in "$@"; do
    if [[ "$_pa_arg" == "--dry-run" ]]; then DRY_RUN=1; fi
done
unset _pa_arg

PREALIGN_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN="${DRY_RUN:-0}"
DATA_DIR="${DATA_DIR:-./prealign_data}"
RAW_DIR="${RAW_DIR:-$DATA_DIR/raw}"
CKPT_DIR="${CKPT_DIR:-./prealign_ckpt}"
RESULTS_DIR="${RESULTS_DIR:-./prealign_results}"
EVAL_DIR="${EVAL_DIR:-$DATA_DIR/eval}"
DICT_DIR="${DICT_DIR:-$DATA_DIR/dictionaries}"
MODEL_SIZE="${MODEL_SIZE:-150m}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
NNODES="${NNODES:-${SLURM_NNODES:-1}}"
LAUNCHER="${LAUNCHER:-local}"
MASTER_ADDR="${MASTER_ADDR:-localhost}"
MASTER_PORT="${MASTER_PORT:-29500}"
TP="${TP:-1}"
PP="${PP:-1}"
SEQ_LENGTH=1024
GLOBAL_BATCH_SIZE="${GLOBAL_BATCH_SIZE:-1024}"
LM_ITERS="${LM_ITERS:-24000}"
PREALIGN_ITERS="${PREALIGN_ITERS:-500}"
WORKERS="${WORKERS:-16}"
STAGES="${STAGES:-data,train,eval}"
PYTHON="${PYTHON:-python}"
PRECISION="${PRECISION:-bf16}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

# Paper §4.3: 10B English tokens, 100M tokens per target language (1%); §3.2: 5% codeswitching.
EN_TOKENS=10000000000
TARGET_TOKENS=100000000
VALID_TOKENS=10000000
CODESWITCH_RATIO=0.05
CODESWITCH_SEED=1234
# Blend weights: proportional to the token counts (10B : 100M), so every dataset is read for the
# same number of epochs. The CLKA knowledge statements get KNOWLEDGE_WEIGHT on that scale.
EN_WEIGHT=100
TARGET_WEIGHT=1
KNOWLEDGE_WEIGHT="${KNOWLEDGE_WEIGHT:-0.01}"

# ----------------------------------------------------------------------------- helpers

pa_has_stage() { [[ ",$STAGES," == *",$1,"* ]]; }

# Print (dry run) or run one command. Printed as one shell-quoted line.
pa_run() {
    if [[ "$DRY_RUN" == 1 ]]; then
        local a line=""
        for a in "$@"; do
            if [[ "$a" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then line+="$a "; else line+="'${a//\'/\'\\\'\'}' "; fi
        done
        echo "${line% }"
    else
        echo "+ $*" >&2
        "$@"
    fi
}

pa_comment() { if [[ "$DRY_RUN" == 1 ]]; then echo "# $*"; else echo "# $*" >&2; fi; }

# pa_step OUTPUT CMD...: data preparation that is skipped when OUTPUT exists (idempotent recipes:
# runs sharing data prepare it once). Dry run prints CMD regardless.
pa_step() {
    local out="$1"; shift
    pa_has_stage data || return 0
    if [[ "$DRY_RUN" != 1 && -e "$out" ]]; then
        echo "# exists, skipped: $out" >&2
        return 0
    fi
    [[ "$DRY_RUN" == 1 ]] || mkdir -p "$(dirname "$out")"
    pa_run "$@"
}

# Expand a glob for tools that take explicit file lists (train_tokenizer.py, build_alignment_table.py).
pa_glob() {
    local matches
    # shellcheck disable=SC2206
    matches=( $1 )
    printf '%s\n' "${matches[@]}"
}

# ----------------------------------------------------------------------------- model + optimizer

# GPT-2 style decoder (learned absolute positions, LayerNorm, GELU MLP of 4 x hidden), untied input
# and output embeddings (PreAlign aligns both), no dropout, sequence length 1024.
# 150m: the paper's 12 layers x 1024 (~150M non-embedding parameters). 400m / 1.3b: the paper gives
# only the sizes; these are the authors' released configs (GPT-Neo style 24 x 1024 and 24 x 2048).
model_flags() {
    local layers hidden heads mbs
    case "$MODEL_SIZE" in
        150m) layers=12; hidden=1024; heads=16; mbs=16 ;;
        400m) layers=24; hidden=1024; heads=16; mbs=8 ;;
        1.3b) layers=24; hidden=2048; heads=16; mbs=4 ;;
        *) echo "MODEL_SIZE must be 150m, 400m or 1.3b (got $MODEL_SIZE)" >&2; return 1 ;;
    esac
    MODEL_FLAGS=(
        --num-layers "$layers" --hidden-size "$hidden" --num-attention-heads "$heads"
        --seq-length "$SEQ_LENGTH" --max-position-embeddings "$SEQ_LENGTH"
        --position-embedding-type learned_absolute --normalization LayerNorm
        --untie-embeddings-and-output-weights --hidden-dropout 0.0 --attention-dropout 0.0
        --init-method-std 0.02
        --tensor-model-parallel-size "$TP" --pipeline-model-parallel-size "$PP"
        --micro-batch-size "${MICRO_BATCH_SIZE:-$mbs}" --global-batch-size "$GLOBAL_BATCH_SIZE"
    )
    if [[ "$PRECISION" == bf16 ]]; then MODEL_FLAGS+=(--bf16); fi
}

# AdamW with cosine decay over the whole job. Peak 3e-4, weight decay 0.1, clipping 1.0 and ~5%
# warm-up follow the authors' released configs; min-lr 3e-5 (10%) and betas (0.9, 0.95) are our
# choice where the text does not give them.
optim_flags() {
    OPTIM_FLAGS=(
        --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 1200
        --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --adam-eps 1e-8 --clip-grad 1.0
    )
}

tokenizer_flags() { TOKENIZER_FLAGS=(--tokenizer-type GPT2BPETokenizer --vocab-file "$TOKENIZER/vocab.json" --merge-file "$TOKENIZER/merges.txt"); }

# ----------------------------------------------------------------------------- launch

# The launcher prefix: torchrun locally, srun + torchrun (c10d rendezvous) under SLURM.
launcher_cmd() {
    local nproc="$1"
    if [[ "$LAUNCHER" == slurm ]]; then
        LAUNCH=(
            srun --nodes "$NNODES" --ntasks-per-node 1 --kill-on-bad-exit=1
            torchrun --nnodes "$NNODES" --nproc-per-node "$nproc"
            --rdzv-id "${SLURM_JOB_ID:-prealign}" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT"
        )
    elif [[ "$NNODES" == 1 ]]; then
        LAUNCH=(torchrun --standalone --nnodes 1 --nproc-per-node "$nproc")
    else  # several nodes without SLURM: run this on every node with the same MASTER_ADDR/PORT
        LAUNCH=(
            torchrun --nnodes "$NNODES" --nproc-per-node "$nproc"
            --rdzv-id "${RDZV_ID:-prealign}" --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT"
        )
    fi
}

# train RUN_NAME --train-iters N [pretrain flags of the row, with its --train-data-path blend...]
# Adds model/optimizer/tokenizer/checkpoint/logging flags shared by every run, and the validation
# data: --valid-data-path "${VALID_BLEND[@]}" (the held-out *_valid sets that setup_en_clone /
# setup_real name). Each split reads its own datasets whole (Megatron-LM's --train-data-path /
# --valid-data-path), so every training document -- every CLKA statement included -- is trained on;
# --data-path with --split would move a share of each dataset, knowledge too, to validation/test.
train() {
    local run="$1"; shift
    pa_has_stage train || return 0
    model_flags; optim_flags; tokenizer_flags
    launcher_cmd "$GPUS_PER_NODE"
    local world=$(( NNODES * GPUS_PER_NODE )) mbs="${MODEL_FLAGS[*]}"
    mbs="${mbs#*--micro-batch-size }"; mbs="${mbs%% *}"
    if (( world % (TP * PP) != 0 || GLOBAL_BATCH_SIZE % (mbs * world / (TP * PP)) != 0 )); then
        echo "train $run: GLOBAL_BATCH_SIZE $GLOBAL_BATCH_SIZE is not a multiple of MICRO_BATCH_SIZE $mbs x" \
             "data-parallel size $(( world / (TP * PP) )) ($NNODES nodes x $GPUS_PER_NODE GPUs / TP $TP x PP $PP);" \
             "set MICRO_BATCH_SIZE or use a power-of-two GPU count" >&2
        return 1
    fi
    local ckpt="$CKPT_DIR/$run"
    local extra=()
    # shellcheck disable=SC2206
    [[ -n "$EXTRA_ARGS" ]] && extra=( $EXTRA_ARGS )
    pa_comment "train $run: MODEL_SIZE=$MODEL_SIZE, $NNODES node(s) x $GPUS_PER_NODE GPUs"
    pa_run "${LAUNCH[@]}" "$PREALIGN_REPO/pretrain_prealign.py" \
        "${MODEL_FLAGS[@]}" "${OPTIM_FLAGS[@]}" "${TOKENIZER_FLAGS[@]}" "$@" \
        --valid-data-path "${VALID_BLEND[@]}" --data-cache-path "$DATA_DIR/index_cache" --num-workers 2 \
        --save "$ckpt" --load "$ckpt" --save-interval "$SAVE_INTERVAL" \
        --log-interval 10 --eval-interval 1000 --eval-iters 20 --tensorboard-dir "$ckpt/tensorboard" \
        "${extra[@]}"
}

# eval_cmd TOOL ARGS...: one evaluation tool on the run's latest checkpoint (TP=1, one process).
eval_cmd() {
    pa_has_stage eval || return 0
    local tool="$1" prev="" a; shift
    if [[ "$DRY_RUN" != 1 ]]; then
        for a in "$@"; do [[ "$prev" == --output ]] && mkdir -p "$(dirname "$a")"; prev="$a"; done
    fi
    pa_run "$PYTHON" "$PREALIGN_REPO/tools/$tool" "$@"
}

xnli_flags() {
    XNLI_FLAGS=(
        --train-file "$EVAL_DIR/multinli_1.0/multinli_1.0_train.jsonl"
        --dev-file "$EVAL_DIR/XNLI-1.0/xnli.dev.tsv" --test-file "$EVAL_DIR/XNLI-1.0/xnli.test.tsv"
    )
}

# ============================================================================= En-Clone setting
# Paper §4.1.1 / §5: English (10B tokens) + En-Clone (100M tokens, the clone of 100M English tokens
# that are not in the English training data). Vocabulary 2V (--en-clone): clone id = id + V.

setup_en_clone() {
    TOKENIZER="${TOKENIZER:-$DATA_DIR/tokenizers/gpt2}"
    SAVE_INTERVAL="${SAVE_INTERVAL:-250}"
    D="$DATA_DIR/en_clone"
    EN="$D/en_train_text_document"                 # English, ids in the 2V vocabulary (int32)
    EN_VALID="$D/en_valid_text_document"
    CLONE_SRC="$D/clone_src_text_document"         # the 100M English tokens to be cloned
    CLONE="$D/clone_train_text_document"           # En-Clone target, 100M tokens
    CLONE_FULL="$D/clone_full_text_document"       # En-Clone, 10B tokens (Full Target)
    CLONE_VALID="$D/clone_valid_text_document"
    WORD_COUNTS="$D/tables/en.word_counts.tsv"
    FIG4_PERIODS="${FIG4_PERIODS:-$(( LM_ITERS / 250 ))}"
    CLKA_DIR="$D/clka"
    KNOWLEDGE="$CLKA_DIR/knowledge/period_000_text_document"
    # Validation (--valid-data-path): held-out English and En-Clone, equal weights. Per-language
    # perplexities come from eval_perplexity.py; a recipe may narrow this (Only/Full Target).
    VALID_BLEND=(1 "$EN_VALID" 1 "$CLONE_VALID")
}

# Alignment table of the top PCT% words (100 = every word seen >= 20 times, paper App. A).
clone_table() { echo "$D/tables/en_clone.top$1.jsonl"; }
# English codeswitched with that table: MODE input-only (PreAlign) or vanilla (Table 4).
en_cs() { echo "$D/en_${1/-only/}_cs_top$2_text_document"; }

prep_en_clone_base() {
    tokenizer_flags
    local base=("${TOKENIZER_FLAGS[@]}")
    pa_step "$TOKENIZER/merges.txt" "$PYTHON" "$PREALIGN_REPO/tools/train_tokenizer.py" \
        --input $(pa_glob "$RAW_DIR/en/train/*_part_00000.parquet") --json-keys text \
        --vocab-size 50257 --output-dir "$TOKENIZER"
    # English: binarized with the En-Clone tokenizer so ids share the 2V (int32) space of the
    # codeswitched copies (codeswitch_dataset.py keeps the input dtype).
    pa_step "$EN.idx" "$PYTHON" "$PREALIGN_REPO/tools/preprocess_data.py" "${base[@]}" --en-clone \
        --input "$RAW_DIR/en/train/*.parquet" --json-keys text --append-eod --max-tokens "$EN_TOKENS" \
        --output-prefix "$D/en_train" --workers "$WORKERS"
    pa_step "$EN_VALID.idx" "$PYTHON" "$PREALIGN_REPO/tools/preprocess_data.py" "${base[@]}" \
        --input "$RAW_DIR/en/valid/*.parquet" --json-keys text --append-eod --max-tokens "$VALID_TOKENS" \
        --output-prefix "$D/en_valid" --workers "$WORKERS"
    pa_step "$CLONE_VALID.idx" "$PYTHON" "$PREALIGN_REPO/tools/make_en_clone.py" "${base[@]}" \
        --input "$EN_VALID" --output-prefix "$CLONE_VALID"
}

prep_clone_target() {
    tokenizer_flags
    pa_step "$CLONE_SRC.idx" "$PYTHON" "$PREALIGN_REPO/tools/preprocess_data.py" "${TOKENIZER_FLAGS[@]}" \
        --input "$RAW_DIR/en/clone/*.parquet" --json-keys text --append-eod --max-tokens "$TARGET_TOKENS" \
        --output-prefix "$D/clone_src" --workers "$WORKERS"
    pa_step "$CLONE.idx" "$PYTHON" "$PREALIGN_REPO/tools/make_en_clone.py" "${TOKENIZER_FLAGS[@]}" \
        --input "$CLONE_SRC" --output-prefix "$CLONE"
}

prep_clone_full() {
    tokenizer_flags
    pa_step "$CLONE_FULL.idx" "$PYTHON" "$PREALIGN_REPO/tools/make_en_clone.py" "${TOKENIZER_FLAGS[@]}" \
        --input "$EN" --output-prefix "$CLONE_FULL"
}

# prep_clone_table PCT: word counts once (NLTK, count >= 20), then the top-PCT% table.
prep_clone_table() {
    local pct="$1" table
    table="$(clone_table "$pct")"
    tokenizer_flags
    pa_step "$(clone_table 100)" "$PYTHON" "$PREALIGN_REPO/tools/build_alignment_table.py" \
        --input $(pa_glob "$RAW_DIR/en/train/*.parquet") --json-keys text --min-count 20 \
        --workers "$WORKERS" --save-word-counts "$WORD_COUNTS" --en-clone "${TOKENIZER_FLAGS[@]}" \
        --output "$(clone_table 100)"
    if [[ "$pct" != 100 ]]; then
        pa_step "$table" "$PYTHON" "$PREALIGN_REPO/tools/build_alignment_table.py" \
            --word-counts "$WORD_COUNTS" --min-count 20 --top-fraction "0.$pct" \
            --en-clone "${TOKENIZER_FLAGS[@]}" --output "$table"
    fi
}

# prep_en_cs MODE PCT: English with 5% codeswitching into En-Clone (+ the loss mask).
prep_en_cs() {
    local mode="$1" pct="$2" out
    out="$(en_cs "$mode" "$pct")"
    prep_clone_table "$pct"
    tokenizer_flags
    pa_step "$out.idx" "$PYTHON" "$PREALIGN_REPO/tools/codeswitch_dataset.py" \
        --input-prefix "$EN" --output-prefix "$out" --alignment-table "$(clone_table "$pct")" \
        --codeswitch-ratio "$CODESWITCH_RATIO" --codeswitch-mode "$mode" --seed "$CODESWITCH_SEED" \
        --threads "$WORKERS" "${TOKENIZER_FLAGS[@]}" --en-clone
}

# CLKA: synthetic English knowledge blended into pretraining, tested in English and En-Clone.
prep_clone_clka() {
    tokenizer_flags
    pa_step "$CLKA_DIR" "$PYTHON" "$PREALIGN_REPO/tools/make_clka.py" \
        --output-dir "$CLKA_DIR" --languages en --facts-per-period 1000 --frequencies 1,2,5,10 \
        "${TOKENIZER_FLAGS[@]}" --en-clone
}

# eval_en_clone RUN TASK...: TASK in ppl (En + En-Clone, split into words seen / unseen in the run's
# table EVAL_TABLE [the full table]: Fig. 6),
# ppl_clone (En-Clone only), xnli, clka, similarity (every checkpoint: Fig. 5), mixed (Table 4).
eval_en_clone() {
    local run="$1"; shift
    local out="$RESULTS_DIR/$run" ckpt="$CKPT_DIR/$run" task
    tokenizer_flags
    xnli_flags
    for task in "$@"; do
        case "$task" in
            ppl) eval_cmd eval_perplexity.py --load "$ckpt" \
                    --data-path "en=$EN_VALID" --data-path "en_clone=$CLONE_VALID" \
                    --alignment-table "${EVAL_TABLE:-$(clone_table 100)}" --output "$out/perplexity.json" ;;
            ppl_clone) eval_cmd eval_perplexity.py --load "$ckpt" \
                    --data-path "en_clone=$CLONE_VALID" --output "$out/perplexity.json" ;;
            xnli) eval_cmd eval_xnli.py --load "$ckpt" "${XNLI_FLAGS[@]}" --languages en,en_clone \
                    --output "$out/xnli.json" ;;
            clka) eval_cmd eval_clka.py --load "$ckpt" --test-dir "$CLKA_DIR" --languages en_clone,en \
                    --output "$out/clka.json" ;;
            similarity) eval_cmd eval_similarity.py --load "$ckpt" --iterations all \
                    --alignment-table "$(clone_table 100)" --output "$out/similarity.json" \
                    --plot "$out/similarity.png" ;;
            mixed) eval_cmd eval_mixed_script.py --load "$ckpt" --prompt-data "$EN_VALID" \
                    --num-prompts 1000 --max-new-tokens 64 --languages en_clone \
                    --output "$out/mixed_script.json" ;;
            *) echo "eval_en_clone: unknown task $task" >&2; return 1 ;;
        esac
    done
}

# ----------------------------------------------------------------------------- Fig. 4 (CLKA dynamics)
# Paper §5.2: pretraining is cut into 250-step periods; in each period new synthetic facts (given
# 1, 2, 5 or 10 times) are blended in, and CLKA is evaluated on the checkpoint at the period's end,
# for knowledge given in English and (another set of facts) in En-Clone, each tested in both.
# pretrain_prealign.py has no data schedule, so each period is one launch with --exit-interval 250
# and that period's knowledge in --train-data-path (resuming from the previous period's checkpoint; the
# LM stream continues at the same sample count of the new blend).
FIG4_PERIOD_STEPS=250

prep_fig4_clka() {
    local start="$1" lang seed
    tokenizer_flags
    for lang in en en_clone; do
        seed=1234; [[ "$lang" == en ]] || seed=4321   # different facts in the two knowledge languages
        pa_step "$D/clka_fig4_$lang" "$PYTHON" "$PREALIGN_REPO/tools/make_clka.py" \
            --output-dir "$D/clka_fig4_$lang" --languages en --num-periods "$FIG4_PERIODS" \
            --steps-per-period "$FIG4_PERIOD_STEPS" --start-iteration "$start" --facts-per-period 1000 \
            --frequencies 1,2,5,10 --knowledge-language "$lang" --seed "$seed" "${TOKENIZER_FLAGS[@]}" --en-clone
    done
}

# Blend weight (on the 100:1 scale) that shows period P's statements about once in its 250 steps.
fig4_weight() {
    local dir="$1" p="$2"
    if [[ "$DRY_RUN" == 1 || ! -f "$dir/schedule.json" ]]; then echo 0.02; return 0; fi
    "$PYTHON" -c 'import json, sys
s = json.load(open(sys.argv[1])); p = int(sys.argv[2])
tokens = next(x["tokens"] for x in s["periods"] if x["period"] == p)
print("%.6g" % (tokens / (int(sys.argv[3]) * int(sys.argv[4]) * int(sys.argv[5])) * float(sys.argv[6])))' \
        "$dir/schedule.json" "$p" "$FIG4_PERIOD_STEPS" "$GLOBAL_BATCH_SIZE" "$SEQ_LENGTH" "$((EN_WEIGHT + TARGET_WEIGHT))"
}

# train_fig4 RUN START: uses the globals ROW (the row's pretrain flags) and BLEND (its --train-data-path blend).
# Launches already covered by the run's latest checkpoint and evaluations already written are
# skipped, so a resubmitted job continues where it stopped.
train_fig4() {
    local run="$1" start="$2" p end latest=0 tag lang dir out
    local tracker="$CKPT_DIR/$run/latest_checkpointed_iteration.txt"
    _fig4_latest() { if [[ "$DRY_RUN" != 1 && -f "$tracker" ]]; then latest="$(cat "$tracker")"; fi; }
    _fig4_latest
    if (( start > 0 && latest < start )); then
        pa_comment "fig4 $run: iterations 0-$start (before the first knowledge period)"
        train "$run" "${ROW[@]}" --train-data-path "${BLEND[@]}" --exit-interval "$start"
    fi
    for ((p = 0; p < FIG4_PERIODS; p++)); do
        end=$(( start + (p + 1) * FIG4_PERIOD_STEPS ))
        tag="$(printf '%03d' "$p")"
        _fig4_latest
        if (( latest < end )); then
            pa_comment "fig4 $run: period $p, iterations $(( end - FIG4_PERIOD_STEPS ))-$end"
            train "$run" "${ROW[@]}" --train-data-path "${BLEND[@]}" \
                "$(fig4_weight "$D/clka_fig4_en" "$p")" "$D/clka_fig4_en/knowledge/period_${tag}_text_document" \
                "$(fig4_weight "$D/clka_fig4_en_clone" "$p")" "$D/clka_fig4_en_clone/knowledge/period_${tag}_text_document" \
                --exit-interval "$FIG4_PERIOD_STEPS"
        fi
        for lang in en en_clone; do
            dir="$D/clka_fig4_$lang"
            out="$RESULTS_DIR/$run/${lang}_knowledge/clka_period_$tag.json"
            if [[ "$DRY_RUN" == 1 || ! -f "$out" ]]; then
                eval_cmd eval_clka.py --load "$CKPT_DIR/$run" --iteration "$end" --test-dir "$dir" \
                    --period "$p" --languages en,en_clone --output "$out"
            fi
        done
    done
}

# ============================================================================= real languages
# Paper §6 / Table 6: English 10B tokens + zh, de, ar, ru 100M tokens each (CulturaX), one
# alignment table for the four languages at once.

REAL_LANGS=(zh de ar ru)

setup_real() {
    TOKENIZER="${TOKENIZER:-$DATA_DIR/tokenizers/bpe64k_multi}"
    SAVE_INTERVAL="${SAVE_INTERVAL:-1000}"
    D="$DATA_DIR/real"
    EN="$D/en_train_text_document"
    EN_CS="$D/en_input_cs_text_document"
    TABLE="$D/tables/en-zh-de-ar-ru.jsonl"
    CLKA_DIR="$D/clka"
    KNOWLEDGE="$CLKA_DIR/knowledge/period_000_text_document"
    # Validation (--valid-data-path): held-out English and each target language, equal weights.
    local lang
    VALID_BLEND=()
    for lang in en "${REAL_LANGS[@]}"; do VALID_BLEND+=(1 "$(valid "$lang")"); done
}

tgt() { echo "$D/${1}_train_text_document"; }
valid() { echo "$D/${1}_valid_text_document"; }

prep_real() {
    tokenizer_flags
    local lang dicts=() samples=()
    for lang in en "${REAL_LANGS[@]}"; do
        # shellcheck disable=SC2207
        samples+=( $(pa_glob "$RAW_DIR/$lang/train/*_part_00000.parquet") )
    done
    # Our choice: a 64k byte-level BPE trained on one CulturaX shard per language.
    pa_step "$TOKENIZER/merges.txt" "$PYTHON" "$PREALIGN_REPO/tools/train_tokenizer.py" \
        --input "${samples[@]}" --json-keys text --vocab-size 64000 --output-dir "$TOKENIZER"
    pa_step "$EN.idx" "$PYTHON" "$PREALIGN_REPO/tools/preprocess_data.py" "${TOKENIZER_FLAGS[@]}" \
        --input "$RAW_DIR/en/train/*.parquet" --json-keys text --append-eod --max-tokens "$EN_TOKENS" \
        --output-prefix "$D/en_train" --workers "$WORKERS"
    for lang in en "${REAL_LANGS[@]}"; do
        if [[ "$lang" != en ]]; then
            pa_step "$(tgt "$lang").idx" "$PYTHON" "$PREALIGN_REPO/tools/preprocess_data.py" "${TOKENIZER_FLAGS[@]}" \
                --input "$RAW_DIR/$lang/train/*.parquet" --json-keys text --append-eod \
                --max-tokens "$TARGET_TOKENS" --output-prefix "$D/${lang}_train" --workers "$WORKERS"
            dicts+=(--dictionary "$lang:$DICT_DIR/en-$lang.txt")
        fi
        pa_step "$(valid "$lang").idx" "$PYTHON" "$PREALIGN_REPO/tools/preprocess_data.py" "${TOKENIZER_FLAGS[@]}" \
            --input "$RAW_DIR/$lang/valid/*.parquet" --json-keys text --append-eod \
            --max-tokens "$VALID_TOKENS" --output-prefix "$D/${lang}_valid" --workers "$WORKERS"
    done
    # Paper App. A: words seen >= 20 times, up to 5 translations per word and language.
    pa_step "$TABLE" "$PYTHON" "$PREALIGN_REPO/tools/build_alignment_table.py" \
        --input $(pa_glob "$RAW_DIR/en/train/*.parquet") --json-keys text --min-count 20 --workers "$WORKERS" \
        --save-word-counts "$D/tables/en.word_counts.tsv" "${dicts[@]}" --max-translations 5 \
        "${TOKENIZER_FLAGS[@]}" --output "$TABLE"
    pa_step "$CLKA_DIR" "$PYTHON" "$PREALIGN_REPO/tools/make_clka.py" \
        --output-dir "$CLKA_DIR" --languages en,zh,de,ar,ru --facts-per-period 1000 --frequencies 1,2,5,10 \
        "${TOKENIZER_FLAGS[@]}"
}

prep_real_cs() {
    tokenizer_flags
    pa_step "$EN_CS.idx" "$PYTHON" "$PREALIGN_REPO/tools/codeswitch_dataset.py" \
        --input-prefix "$EN" --output-prefix "$EN_CS" --alignment-table "$TABLE" \
        --codeswitch-ratio "$CODESWITCH_RATIO" --codeswitch-mode input-only --seed "$CODESWITCH_SEED" \
        --threads "$WORKERS" "${TOKENIZER_FLAGS[@]}"
}

# The target-language part of the Table 6 blend (100M tokens each) + the CLKA knowledge.
real_targets() {
    local lang
    REAL_TARGETS=()
    for lang in "${REAL_LANGS[@]}"; do REAL_TARGETS+=("$TARGET_WEIGHT" "$(tgt "$lang")"); done
    REAL_TARGETS+=("$KNOWLEDGE_WEIGHT" "$KNOWLEDGE")
}

eval_real() {
    local run="$1"
    local out="$RESULTS_DIR/$run" ckpt="$CKPT_DIR/$run" lang ppl=()
    for lang in en "${REAL_LANGS[@]}"; do ppl+=(--data-path "$lang=$(valid "$lang")"); done
    xnli_flags
    eval_cmd eval_perplexity.py --load "$ckpt" "${ppl[@]}" \
        --alignment-table "$TABLE" --output "$out/perplexity.json"
    eval_cmd eval_xnli.py --load "$ckpt" "${XNLI_FLAGS[@]}" --languages en,zh,de,ar,ru --output "$out/xnli.json"
    eval_cmd eval_clka.py --load "$ckpt" --test-dir "$CLKA_DIR" --languages zh,de,ar,ru --output "$out/clka.json"
    eval_cmd eval_mixed_script.py --load "$ckpt" --prompt-data "$(valid en)" --num-prompts 1000 \
        --max-new-tokens 64 --languages zh,ru,ar,de --alignment-table "$TABLE" --output "$out/mixed_script.json"
}
