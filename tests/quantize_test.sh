#!/usr/bin/env bash
# `dsv3 quantize` end to end on the tiny preset: F32 and FP8 checkpoints quantized to q8 and q4,
# loaded back, and compared with the F32 model by `dsv3 quant-accuracy` (next-token KL and top-1
# agreement over a fixed sequence) with thresholds; lying quantized files must fail cleanly.
#
# usage: bash tests/quantize_test.sh DSV3_BINARY BUILD_DIR
set -uo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: bash tests/quantize_test.sh DSV3_BINARY BUILD_DIR" >&2
  exit 2
fi
DSV3=$1
BUILD_DIR=$2
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3

mkdir -p "$BUILD_DIR"
WORK=$(mktemp -d "$BUILD_DIR/quantize.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

"$DSV3" make-tiny "$WORK/f32" --preset tiny --dtype f32 --seed 7 2>/dev/null || { echo "make-tiny failed" >&2; exit 1; }
"$DSV3" make-tiny "$WORK/fp8" --preset tiny --dtype fp8 --seed 7 2>/dev/null || { echo "make-tiny failed" >&2; exit 1; }
for type in q8 q4; do
  "$DSV3" quantize -m "$WORK/f32" -o "$WORK/$type" --type $type || fail "quantize f32 -> $type"
  "$DSV3" quantize -m "$WORK/fp8" -o "$WORK/fp8-$type" --type $type || fail "quantize fp8 -> $type"
done
[[ -f $WORK/q8/tokenizer.json || ! -f $WORK/f32/tokenizer.json ]] || fail "tokenizer files not copied"
$PYTHON - "$WORK" <<'PYTHON' || fail "quantized layout"
import json, struct, sys
work = sys.argv[1]
config = json.load(open(f"{work}/q4/config.json"))
q = config["quantization_config"]
assert q["quant_method"] == "dsv3" and q["fmt"] == "q4" and q["weight_block_size"] == [1, 32], q
raw = open(f"{work}/q4/model.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
# q4's mixture: the dense layer's MLP and the shared experts in Q8, listed in q8_modules.
assert q["q8_modules"] == ["*mlp.shared_experts.*", "*model.layers.0.mlp.*"], q
assert header["model.layers.0.mlp.down_proj.weight"]["dtype"] == "I8"
assert header["model.layers.0.mlp.down_proj.weight"]["shape"] == [192, 384]
assert header["model.layers.1.mlp.shared_experts.up_proj.weight"]["dtype"] == "I8"
assert header["model.layers.1.mlp.experts.0.down_proj.weight"]["dtype"] == "U8"
assert header["model.layers.1.mlp.experts.0.down_proj.weight"]["shape"] == [192, 64]  # 96 cols
assert header["model.layers.1.mlp.experts.0.down_proj.weight_scale"]["shape"] == [192, 3]
assert header["lm_head.weight"]["dtype"] == "U8"
assert header["model.embed_tokens.weight"]["dtype"] == "F32"
assert header["model.layers.1.mlp.gate.weight"]["dtype"] == "F32"  # the router stays
assert header["model.layers.1.mlp.gate.e_score_correction_bias"]["dtype"] == "F32"
PYTHON

# --pure: every linear weight in Q4, no q8_modules.
"$DSV3" quantize -m "$WORK/f32" -o "$WORK/q4-pure" --type q4 --pure 2>/dev/null || fail "quantize --pure"
$PYTHON - "$WORK/q4-pure" <<'PYTHON' || fail "quantize --pure layout"
import json, struct, sys
work = sys.argv[1]
assert "q8_modules" not in json.load(open(f"{work}/config.json"))["quantization_config"]
raw = open(f"{work}/model.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
assert header["model.layers.0.mlp.down_proj.weight"]["dtype"] == "U8"
assert header["model.layers.0.mlp.down_proj.weight"]["shape"] == [192, 3 * 64]  # 384 cols
PYTHON

# --keep: tensors whose name contains a part keep their precision, listed in the config; the
# mixed checkpoint loads and runs.
"$DSV3" quantize -m "$WORK/f32" -o "$WORK/q4-keep" --type q4 --keep self_attn,lm_head 2>/dev/null ||
  fail "quantize --keep"
$PYTHON - "$WORK/q4-keep" <<'PYTHON' || fail "quantize --keep layout"
import json, struct, sys
work = sys.argv[1]
config = json.load(open(f"{work}/config.json"))
assert "*self_attn*" in config["quantization_config"]["modules_not_to_convert"], config
raw = open(f"{work}/model.safetensors", "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
assert header["model.layers.1.self_attn.o_proj.weight"]["dtype"] == "F32"
assert "model.layers.1.self_attn.o_proj.weight_scale" not in header
assert header["lm_head.weight"]["dtype"] == "F32"
assert header["model.layers.1.mlp.experts.0.up_proj.weight"]["dtype"] == "U8"
PYTHON
"$DSV3" quant-accuracy --reference "$WORK/f32" --tokens 8 "$WORK/q4-keep" >/dev/null || fail "a --keep checkpoint runs"
out=$("$DSV3" quantize -m "$WORK/f32" -o "$WORK/q4-bad" --type q4 --keep "self_attn,,x" 2>&1)
[[ $? -ne 0 && $out == *"empty name part"* ]] || fail "quantize --keep with an empty part: $out"

# Thresholds for the tiny preset (hidden 192, 3 layers, random weights): its next-token
# distributions over 129280 tokens are nearly flat, so top-1 flips on tiny logit changes; the
# mean KL is the sharper check (a wrong scale or index gives KL > 1). Measured: q8 0.0009 / 97.9%,
# q4 0.042 / 47%, fp8 0.017 / 77%.
accuracy() {  # accuracy MIN_TOP1 MAX_MEAN_KL DIR...
  local min=$1 max_kl=$2
  shift 2
  "$DSV3" quant-accuracy --reference "$WORK/f32" --tokens 96 --min-top1 "$min" --max-mean-kl "$max_kl" "$@" ||
    fail "accuracy of $* below top-1 $min% or above mean KL $max_kl"
}
accuracy 95 0.003 "$WORK/q8"
accuracy 35 0.06 "$WORK/q4" "$WORK/fp8-q4" "$WORK/q4-pure"
accuracy 65 0.03 "$WORK/fp8" "$WORK/fp8-q8"

# The JSON rows carry top-5 agreement (never below top-1) and how decisive the reference is.
"$DSV3" quant-accuracy --reference "$WORK/f32" --tokens 32 --json "$WORK/q8" "$WORK/q4" >"$WORK/acc.json" ||
  fail "quant-accuracy --json"
$PYTHON - "$WORK/acc.json" <<'PYTHON' || fail "quant-accuracy --json fields"
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 2, rows
for row in rows:
    assert 0 <= row["top1_pct"] <= row["top5_pct"] <= 100, row
    assert 0 < row["reference_top1_probability"] <= 1, row
assert rows[0]["top5_pct"] >= 95, rows[0]
PYTHON

# --reference-routes: a second row per model with the reference's routing replayed; the
# thresholds judge that row (same routing: only the matrix products differ).
# (q8 on this checkpoint: KL 0.0019 with its own routing, 6e-5 with the reference's.)
"$DSV3" quant-accuracy --reference "$WORK/f32" --tokens 48 --reference-routes --min-top1 90 --max-mean-kl 0.0005 \
  "$WORK/q8" >/dev/null || fail "quant-accuracy --reference-routes: q8 above KL 0.0005 with the reference's routes"
"$DSV3" quant-accuracy --reference "$WORK/f32" --tokens 48 --reference-routes --json "$WORK/q8" "$WORK/q4" \
  >"$WORK/routes.json" || fail "quant-accuracy --reference-routes --json"
$PYTHON - "$WORK/routes.json" <<'PYTHON' || fail "quant-accuracy --reference-routes rows"
import json, sys
rows = json.load(open(sys.argv[1]))
assert [r["routing"] for r in rows] == ["own", "reference", "own", "reference"], rows
for own, replayed in (rows[0:2], rows[2:4]):
    assert replayed["mean_kl"] <= own["mean_kl"] + 1e-9, (own, replayed)
    assert 0 <= replayed["routing_differing_pct"] <= 100, replayed
    assert "routing_differing_pct" not in own, own
PYTHON

# --text: the sequence is a file's text as the reference's tokenizer encodes it (BOS first).
if [[ -f $WORK/f32/tokenizer.json ]]; then
  printf 'The quick brown fox jumps over the lazy dog. %.0s' {1..8} >"$WORK/text.txt"
  "$DSV3" quant-accuracy --reference "$WORK/f32" --text "$WORK/text.txt" --tokens 48 --max-mean-kl 0.003 \
    "$WORK/q8" >"$WORK/text.out" || fail "quant-accuracy --text"
  grep -q "48 tokens" "$WORK/text.out" || fail "quant-accuracy --text: $(cat "$WORK/text.out")"
  out=$("$DSV3" quant-accuracy --reference "$WORK/f32" --text "$WORK/text.txt" --tokens 5000 "$WORK/q8" 2>&1 >/dev/null)
  [[ $? -eq 1 && $out == *"fewer than --tokens"* ]] || fail "quant-accuracy --text too short: $out"
  out=$("$DSV3" quant-accuracy --reference "$WORK/f32" --text "$WORK/missing.txt" "$WORK/q8" 2>&1 >/dev/null)
  [[ $? -eq 1 && $out == *"cannot read"* ]] || fail "quant-accuracy --text missing file: $out"
fi

# The same result whichever kernels run (the integer parts are exact; sums in another order).
for isa in scalar avx2; do
  DSV3_KERNELS=$isa "$DSV3" quant-accuracy --reference "$WORK/f32" --tokens 96 --max-mean-kl 0.003 "$WORK/q8" \
    >/dev/null 2>"$WORK/isa.err" || { grep -q "does not support" "$WORK/isa.err" || fail "q8 with DSV3_KERNELS=$isa"; }
done

# Lying files: each must fail with exit code 1 and a one-line error naming the problem.
expect_error() {  # expect_error DIR PATTERN
  local out
  out=$("$DSV3" quant-accuracy --reference "$WORK/f32" --tokens 4 "$1" 2>&1 >/dev/null)
  local code=$?
  [[ $code -eq 1 ]] || fail "$1: exit code $code, expected 1 ($out)"
  [[ $out == *"$2"* ]] || fail "$1: error \"$out\" does not mention \"$2\""
}
cp -r "$WORK/q8" "$WORK/no-config"
$PYTHON - "$WORK/no-config/config.json" <<'PYTHON'
import json, sys
c = json.load(open(sys.argv[1])); del c["quantization_config"]; json.dump(c, open(sys.argv[1], "w"))
PYTHON
expect_error "$WORK/no-config" 'quant_method "dsv3"'
cp -r "$WORK/q8" "$WORK/wrong-fmt"
sed -i 's/"fmt": "q8"/"fmt": "q4"/' "$WORK/wrong-fmt/config.json"
expect_error "$WORK/wrong-fmt" "expected U8"
cp -r "$WORK/q4-pure" "$WORK/wrong-q8-modules"  # claims Q8 shared experts that are Q4
$PYTHON - "$WORK/wrong-q8-modules/config.json" <<'PYTHON'
import json, sys
c = json.load(open(sys.argv[1])); c["quantization_config"]["q8_modules"] = ["*shared_experts*"]
json.dump(c, open(sys.argv[1], "w"))
PYTHON
expect_error "$WORK/wrong-q8-modules" "(a q8_modules tensor)"
cp -r "$WORK/q8" "$WORK/bad-scale"
$PYTHON - "$WORK/bad-scale/model.safetensors" <<'PYTHON'
import json, struct, sys
path = sys.argv[1]
raw = open(path, "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
entry = header["model.layers.0.self_attn.o_proj.weight_scale"]
rows, groups = entry["shape"]
entry["shape"] = [groups, rows]  # same bytes, transposed shape
text = json.dumps(header).encode()
text += b" " * ((8 - len(text) % 8) % 8)
open(path, "wb").write(struct.pack("<Q", len(text)) + text + raw[8 + n:])
PYTHON
expect_error "$WORK/bad-scale" "o_proj.weight_scale has shape"
out=$("$DSV3" quantize -m "$WORK/q8" -o "$WORK/again" --type q4 2>&1)
[[ $? -eq 1 && $out == *"already quantized"* ]] || fail "re-quantizing: $out"

if [[ $failures -gt 0 ]]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "quantize test passed"
