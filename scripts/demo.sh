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
ids=0,19923,2058,223,6895
echo "logits of ids [$ids] on $model:"
build/dsv3 logits -m "$model" --ids "$ids" --out models/demo-logits.npy
/usr/bin/python3 - <<'PY'
import numpy as np
logits = np.load("models/demo-logits.npy")
print("shape", logits.shape)
for row, values in enumerate(logits):
    top = np.argsort(-values)[:5]
    print(f"position {row}: top-5 next ids {top.tolist()}")
PY
echo "(random weights: the predictions are meaningless; point -m at a real checkpoint directory)"
