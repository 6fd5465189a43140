#!/usr/bin/env bash
# The main job on the embedded default: builds dsv3, creates a tiny random DeepSeek-V3
# checkpoint (real tokenizer, random weights) if missing, and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh >/dev/null
model=${DSV3_MODEL:-models/tiny}
if [ ! -f "$model/config.json" ]; then
  build/dsv3 make-tiny "$model" --preset tiny --dtype bf16 --seed 0
fi
echo "== a short chat-templated generation on $model (random weights: expect gibberish)"
build/dsv3 generate -m "$model" --chat -p "Hello! Who are you?" -n 24 --temp 0.7 --seed 1
echo
echo "The tiny model has random weights, so its text is meaningless. Point -m at a real"
echo "Hugging Face DeepSeek-V3 checkpoint directory to talk to a real model:"
echo "  build/dsv3 chat -m /path/to/DeepSeek-V3"
