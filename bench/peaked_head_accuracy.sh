#!/usr/bin/env bash
# Quantization accuracy on a bench-shaped checkpoint whose predictions are decisive.
#
#   bash bench/peaked_head_accuracy.sh [DSV3_BINARY] [WORK_DIR] [EVAL_TOKENS]
#
# On a random checkpoint the next-token distributions are flat (top-1 probability ~4e-4), so
# top-1 agreement under quantization measures near-ties, not accuracy. Here the body of the
# `bench` preset stays random, but its lm_head is refitted (bench/peaked_head.py) to the final
# hidden states of real English text, the license texts every Debian system has in
# /usr/share/common-licenses, so that the model predicts that text with trained-model-like
# confidence. The same head goes into the F32, BF16 and FP8 checkpoints; q8, q4 and q4 --pure are
# quantized from the BF16 one, as a user would. `dsv3 quant-accuracy` then compares every format with F32
# over held-out text (the GPL-2, not in the training text), with each model's own routing and
# with the reference's routing replayed (--reference-routes: on a random body a third of the
# routings flip under BF16 rounding alone; bench/routing_sensitivity.py shows the same with the
# float64 reference). Steps whose outputs exist are skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dsv3=$(realpath "${1:-$here/../build/dsv3}")
work=${2:-/tmp/dsv3-peaked}
eval_tokens=${3:-1024}
python=/usr/bin/python3  # Debian's, with python3-numpy
licenses=/usr/share/common-licenses
mkdir -p "$work/hidden"
cd "$work"

for dtype in f32 bf16 fp8; do
  [ -f "$dtype/config.json" ] || "$dsv3" make-tiny "$dtype" --preset bench --dtype "$dtype"
done

cat "$licenses"/{Apache-2.0,Artistic,BSD,GFDL-1.3,GPL-3,LGPL-2.1,LGPL-3,MPL-1.1,MPL-2.0,CC0-1.0} \
  >train.txt
cp "$licenses/GPL-2" eval.txt

# The training text's final hidden states (BF16 body), 2048 positions at a time, each led by BOS.
if [ ! -f head.npy ]; then
  "$dsv3" tokenize -m bf16 --stdin --json <train.txt >train.json
  "$python" - <<'EOF'
import json
ids = json.load(open("train.json"))
for k, start in enumerate(range(0, len(ids), 2047)):
    open(f"hidden/chunk{k:02d}.ids", "w").write(",".join(map(str, [0] + ids[start:start + 2047])))
EOF
  for ids in hidden/chunk*.ids; do
    last=${ids%.ids}.last.npy
    [ -f "$last" ] && continue
    "$dsv3" logits -m bf16 --ids "$(cat "$ids")" --hidden-out hidden/all.npy
    "$python" -c "import numpy as np; np.save('$last', np.load('hidden/all.npy')[-1])"
    rm hidden/all.npy
  done
  hidden_files=$(ls hidden/chunk*.last.npy | paste -sd,)
  "$python" "$here/peaked_head.py" fit --hidden "$hidden_files" \
    --ids "$(ls hidden/chunk*.ids | paste -sd,)" --random-head f32 --out head.npy
  for dtype in f32 bf16 fp8; do "$python" "$here/peaked_head.py" write --head head.npy --checkpoint "$dtype"; done
  rm -rf q8 q4 q4-pure
fi
for type in q8 q4; do
  [ -f "$type/config.json" ] || "$dsv3" quantize -m bf16 -o "$type" --type "$type"
done
[ -f q4-pure/config.json ] || "$dsv3" quantize -m bf16 -o q4-pure --type q4 --pure

"$dsv3" quant-accuracy --reference f32 --text eval.txt --tokens "$eval_tokens" --reference-routes bf16 fp8 q8 q4 q4-pure
