#!/usr/bin/env bash
# The transformers-shaped API against the Python reference (tests/reference/hf_api_ref.py) on f32
# checkpoints, through the CLI:
#   - hidden states of every layer (output_hidden_states order) and attention weights,
#   - the causal-LM loss, with labels = ids and with -100 labels,
#   - padded batches (left and right padding, attention_mask) equal the reference's masked batch,
#     and their real tokens equal the unpadded single sequences,
#   - sequence classification logits and loss for each problem type,
#   - perplexity with a sliding window (token ids and a text file),
#   - sensitivity: a wrong mask or wrong labels must be detected.
# Tolerance: max|diff| <= 1e-4 * max|reference| (as the parity test); losses to 1e-4 relative.
# usage: hf_api_test.sh DSV3_BINARY BUILD_DIR
set -u
DSV3=$1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dsv3-hf-api.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
REF="$PY $HERE/reference/hf_api_ref.py"
COMPARE="$PY $HERE/reference/compare_npy.py"
passed=0
failed=0
check() {  # name, command...
  local name=$1 result
  shift
  if result=$("$@" 2>&1); then
    passed=$((passed + 1))
    echo "ok   $name: $(echo "$result" | head -1)"
  else
    failed=$((failed + 1))
    echo "FAIL $name: $result"
  fi
}
check_fails() {  # name, command... (which must fail)
  local name=$1
  shift
  if "$@" >/dev/null 2>&1; then
    failed=$((failed + 1))
    echo "FAIL $name: the command succeeded"
  else
    passed=$((passed + 1))
    echo "ok   $name"
  fi
}
# Two `loss <value>` / `perplexity <value>` outputs agree to 1e-4 relative.
same_value() {  # key, reference output, candidate output
  $PY -c "
import sys
def get(text):
    values = [float(l.split()[1]) for l in text.splitlines() if l.startswith('$1 ')]
    if not values: sys.exit('no $1 line in: ' + text)
    return values[0]
a, b = get(sys.argv[1]), get(sys.argv[2])
print(f'$1 reference {a:.9g} dsv3 {b:.9g}')
sys.exit(0 if abs(a - b) <= 1e-4 * max(1.0, abs(a)) else 1)" "$2" "$3"
}
# The routing of the reference must not nearly tie (the engine could pick another expert).
safe_margin() {  # reference output
  $PY -c "
import sys
m = [float(l.split()[1]) for l in sys.argv[1].splitlines() if l.startswith('routing_margin')]
sys.exit(0 if m and m[0] >= 1e-5 else 'routing margin too small: ' + sys.argv[1])" "$1"
}

for preset in tiny-smallvocab tiny-noqlora; do
  dir="$WORK/$preset"
  "$DSV3" make-tiny "$dir" --preset "$preset" --dtype f32 --seed 7 2>/dev/null || { failed=$((failed + 1)); echo "FAIL make-tiny $preset"; continue; }
  if [ "$preset" = tiny-smallvocab ]; then
    IDS="0,5,17,100,200,300,7,9"
    BATCH="1,1,1,0,5,17,100,200;0,5,17,100,200,300,7,9;0,7,9,11,13,1,1,1"
    MASK="0,0,0,1,1,1,1,1;1,1,1,1,1,1,1,1;1,1,1,1,1,0,0,0"
    LABELS="-100,5,17,-100,200,300,-100,9"
  else
    IDS="0,1234,98765,4321,11,22,33,44"
    BATCH="1,1,1,0,1234,98765,4321,11;0,1234,98765,4321,11,22,33,44;0,42,4242,424,24,1,1,1"
    MASK="0,0,0,1,1,1,1,1;1,1,1,1,1,1,1,1;1,1,1,1,1,0,0,0"
    LABELS="-100,1234,98765,-100,11,22,-100,44"
  fi

  # One sequence: logits, hidden states, attentions, loss with labels = ids and with -100.
  ref_out=$($REF forward -m "$dir" --ids "$IDS" --logits-out "$WORK/r_logits.npy" --hidden-out "$WORK/r_hidden.npy" \
            --attentions-out "$WORK/r_attn.npy" --labels --report-margin)
  check "$preset routing margin" safe_margin "$ref_out"
  out=$("$DSV3" logits -m "$dir" --ids "$IDS" --out "$WORK/logits.npy" --hidden-out "$WORK/hidden.npy" \
        --attentions-out "$WORK/attn.npy" --labels)
  check "$preset logits" $COMPARE "$WORK/r_logits.npy" "$WORK/logits.npy"
  check "$preset hidden states [layers+1, seq, hidden]" $COMPARE "$WORK/r_hidden.npy" "$WORK/hidden.npy"
  check "$preset attentions [layers, heads, seq, seq]" $COMPARE "$WORK/r_attn.npy" "$WORK/attn.npy"
  check "$preset loss (labels = ids)" same_value loss "$ref_out" "$out"
  ref_out=$($REF forward -m "$dir" --ids "$IDS" --label-ids="$LABELS")
  out=$("$DSV3" logits -m "$dir" --ids "$IDS" --label-ids "$LABELS")
  check "$preset loss (-100 labels)" same_value loss "$ref_out" "$out"

  # A padded batch: left padding, none, right padding.
  ref_out=$($REF forward -m "$dir" --ids "$BATCH" --mask "$MASK" --logits-out "$WORK/r_batch.npy" \
            --hidden-out "$WORK/r_bhidden.npy" --attentions-out "$WORK/r_battn.npy" --labels --report-margin)
  check "$preset batch routing margin" safe_margin "$ref_out"
  out=$("$DSV3" logits -m "$dir" --ids "$BATCH" --mask "$MASK" --out "$WORK/batch.npy" \
        --hidden-out "$WORK/bhidden.npy" --attentions-out "$WORK/battn.npy" --labels)
  check "$preset padded batch logits" $COMPARE "$WORK/r_batch.npy" "$WORK/batch.npy"
  check "$preset padded batch hidden states" $COMPARE "$WORK/r_bhidden.npy" "$WORK/bhidden.npy"
  check "$preset padded batch attentions" $COMPARE "$WORK/r_battn.npy" "$WORK/battn.npy"
  check "$preset padded batch loss" same_value loss "$ref_out" "$out"
  # The real tokens of each padded row equal the row alone, unpadded (reference, no mask).
  check "$preset padded rows equal unpadded sequences" $PY -c "
import subprocess, sys, numpy as np
batch = np.load('$WORK/batch.npy')
rows = [r.split(',') for r in '$BATCH'.split(';')]
masks = [[int(v) for v in m.split(',')] for m in '$MASK'.split(';')]
worst = 0.0
for b, (row, mask) in enumerate(zip(rows, masks)):
    real = [i for i, m in enumerate(mask) if m]
    ids = ','.join(row[i] for i in real)
    subprocess.run(['$PY', '$HERE/reference/hf_api_ref.py', 'forward', '-m', '$dir', '--ids', ids,
                    '--logits-out', '$WORK/alone.npy'], check=True)
    alone = np.load('$WORK/alone.npy')
    worst = max(worst, float(np.max(np.abs(batch[b, real] - alone))) / float(np.max(np.abs(alone))))
print(f'max|diff| / max|ref| {worst:.3g}')
sys.exit(0 if worst <= 1e-4 else 1)"
  # Sensitivity: the mask must matter (no mask gives other logits for the padded rows).
  "$DSV3" logits -m "$dir" --ids "$BATCH" --out "$WORK/nomask.npy"
  check_fails "$preset sensitivity: a missing mask is detected" $COMPARE "$WORK/r_batch.npy" "$WORK/nomask.npy"
  out=$("$DSV3" logits -m "$dir" --ids "$IDS" --label-ids "$IDS")
  ref_out=$($REF forward -m "$dir" --ids "$IDS" --label-ids="$LABELS")
  check_fails "$preset sensitivity: ignoring no label is detected" same_value loss "$ref_out" "$out"
  rm -rf "$dir"
done

# Sequence classification: 3 labels (single-label, multi-label, regression over 3 values) and
# 1 label (regression, squeezed).
for labels in 3 1; do
  dir="$WORK/classifier-$labels"
  "$DSV3" make-tiny "$dir" --preset tiny-smallvocab --dtype f32 --seed 3 --classifier --num-labels $labels 2>/dev/null
  BATCH="1,1,0,5,17,100;0,5,17,100,200,300;0,7,9,1,1,1"
  MASK="0,0,1,1,1,1;1,1,1,1,1,1;1,1,1,0,0,0"
  if [ $labels = 3 ]; then
    cases=("single_label_classification|--labels 2,0,-100|--class-labels=2,0,-100"
           "multi_label_classification|--label-values 1,0,1;0,0,1;1,1,0|--label-values=1,0,1;0,0,1;1,1,0"
           "regression|--label-values 0.5,1,2;0,-1,1;3,0,0|--label-values=0.5,1,2;0,-1,1;3,0,0|regression")
  else
    cases=("regression|--label-values 0.5;-1;2|--label-values=0.5;-1;2")
  fi
  for case in "${cases[@]}"; do
    IFS='|' read -r kind dsv3_labels ref_labels forced <<<"$case"
    problem=()
    [ -n "${forced:-}" ] && problem=(--problem-type "$forced")
    ref_out=$($REF classify -m "$dir" --ids "$BATCH" --mask "$MASK" $ref_labels "${problem[@]}" --out "$WORK/r_cls.npy")
    # shellcheck disable=SC2086
    out=$("$DSV3" classify -m "$dir" --ids "$BATCH" --mask "$MASK" $dsv3_labels "${problem[@]}" --out "$WORK/cls.npy")
    check "classifier($labels) $kind routing margin" safe_margin "$ref_out"
    check "classifier($labels) $kind logits" $COMPARE "$WORK/r_cls.npy" "$WORK/cls.npy"
    check "classifier($labels) $kind loss" same_value loss "$ref_out" "$out"
  done
  if [ $labels = 3 ]; then
    check "classifier prints the argmax label" bash -c "'$DSV3' classify -m '$dir' --ids 0,5,17 | grep -q '^label LABEL_[012]$'"
  fi
done

# Perplexity: token ids (several window/stride shapes) and a text file on the real vocabulary.
dir="$WORK/lm"
"$DSV3" make-tiny "$dir" --preset tiny-smallvocab --dtype f32 --seed 7 2>/dev/null
check_fails "classify refuses a causal-LM checkpoint (no score.weight)" "$DSV3" classify -m "$dir" --ids 0,5
IDS=$($PY -c "import random; random.seed(1); print(','.join(str(random.randrange(512)) for _ in range(40)))")
for shape in "16 6" "16 16" "40 40" "8 3"; do
  set -- $shape
  ref_out=$($REF perplexity -m "$dir" --ids "$IDS" --ctx $1 --stride $2)
  out=$("$DSV3" perplexity -m "$dir" --ids "$IDS" --ctx $1 --stride $2)
  check "perplexity ctx $1 stride $2" same_value perplexity "$ref_out" "$out"
done
dir="$WORK/tiny"
if "$DSV3" make-tiny "$dir" --preset tiny --dtype f32 --seed 7 2>/dev/null; then
  printf 'The quick brown fox jumps over the lazy dog. Perplexity measures surprise.\n' >"$WORK/text.txt"
  IDS=$("$DSV3" tokenize -m "$dir" --stdin --bos <"$WORK/text.txt" | tr ' ' ',')
  ref_out=$($REF perplexity -m "$dir" --ids "$IDS" --ctx 10 --stride 4)
  out=$("$DSV3" perplexity -m "$dir" -f "$WORK/text.txt" --ctx 10 --stride 4)
  check "perplexity of a text file" same_value perplexity "$ref_out" "$out"
  check "perplexity prints tokens/s" bash -c "echo '$out' | grep -q '^tokens/s [0-9]'"
else
  failed=$((failed + 1))
  echo "FAIL make-tiny tiny (tokenizer files missing?)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
