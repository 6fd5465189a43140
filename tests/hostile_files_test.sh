#!/usr/bin/env bash
# Hostile checkpoints at the command line: corrupted copies of a make-tiny checkpoint must make
# `dsv3 logits` fail cleanly: exit code 1 (not 0, not a signal), and stderr exactly one line
# starting with "dsv3 logits: error:" that names the problem. No output file may be left behind.
#
# usage: bash tests/hostile_files_test.sh DSV3_BINARY BUILD_DIR
set -uo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: bash tests/hostile_files_test.sh DSV3_BINARY BUILD_DIR" >&2
  exit 2
fi
DSV3=$1
BUILD_DIR=$2
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3
TIMEOUT_SECONDS=120

mkdir -p "$BUILD_DIR"
WORK=$(mktemp -d "$BUILD_DIR/hostile_files.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT

# Edits safetensors files the way a corrupted download or a hostile author would, keeping
# everything else intact: the header is parsed, changed as JSON, re-padded to 8 bytes and written
# back in front of the unchanged data section.
cat >"$WORK/edit_safetensors.py" <<'PYTHON'
import json, struct, sys

def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length].decode("utf-8"))
    return header, raw[8 + length:]

def save(path, header_bytes, data):
    header_bytes += b" " * ((8 - len(header_bytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)) + header_bytes + data)

def tensors_by_offset(header):
    names = [n for n in header if n != "__metadata__"]
    return sorted(names, key=lambda n: tuple(header[n]["data_offsets"]))

def nbytes(entry):
    begin, end = entry["data_offsets"]
    return end - begin

def pick(header, name):
    if name in header:
        return name
    sys.exit("edit_safetensors: no tensor %r in the header" % name)

def main():
    path, operation, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if operation == "truncate":  # keep the first N bytes (N may be "half")
        with open(path, "rb") as f:
            raw = f.read()
        keep = len(raw) // 2 if args[0] == "half" else int(args[0])
        with open(path, "wb") as f:
            f.write(raw[:keep])
        return
    if operation == "set-header-length":  # "past-eof" = the file size, or a number
        with open(path, "r+b") as f:
            size = f.seek(0, 2)
            value = size if args[0] == "past-eof" else int(args[0])
            f.seek(0)
            f.write(struct.pack("<Q", value))
        return
    header, data = load(path)
    if operation == "raw-header":  # replace the header text
        save(path, args[0].encode("utf-8"), data)
        return
    sized = [n for n in tensors_by_offset(header) if nbytes(header[n]) > 0]
    if operation == "offsets-past-end":  # the last tensor, moved beyond the data
        entry = header[sized[-1]]
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = [begin + len(data), end + len(data)]
    elif operation == "begin-after-end":
        entry = header[sized[0]]
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = [end, begin]
    elif operation == "overlap":  # the second tensor moved onto the first one's bytes
        first, second = header[sized[0]], header[sized[1]]
        begin = first["data_offsets"][0]
        second["data_offsets"] = [begin, begin + nbytes(second)]
    elif operation == "change-dtype":  # a dtype of another size: the byte count stops matching
        entry = header[sized[0]]
        entry["dtype"] = "F32" if entry["dtype"] in ("BF16", "F16", "F8_E4M3") else "BF16"
    elif operation == "set-dtype":
        header[pick(header, args[0])]["dtype"] = args[1]
    elif operation == "set-shape":  # JSON text, e.g. "[-1, 64]"
        header[pick(header, args[0])]["shape"] = json.loads(args[1])
    elif operation == "drop":
        del header[pick(header, args[0])]
    elif operation == "flatten":  # same bytes, one dimension
        entry = header[pick(header, args[0])]
        count = 1
        for dim in entry["shape"]:
            count *= dim
        entry["shape"] = [count]
    else:
        sys.exit("edit_safetensors: unknown operation " + operation)
    save(path, json.dumps(header).encode("utf-8"), data)

main()
PYTHON

# Edits config.json: set a field to a JSON value.
cat >"$WORK/edit_config.py" <<'PYTHON'
import json, sys
path, field, value = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path) as f:
    config = json.load(f)
config[field] = json.loads(value)
with open(path, "w") as f:
    json.dump(config, f, indent=2)
PYTHON

edit_safetensors() { "$PYTHON" "$WORK/edit_safetensors.py" "$@"; }
edit_config() { "$PYTHON" "$WORK/edit_config.py" "$@"; }

passed=0
failed=0
failures=()

fail_setup() {
  echo "FAIL (setup): $*"
  exit 1
}

# The checkpoint every case starts from: it must work, or every case would "pass" for nothing.
BASE=$WORK/base
if ! "$DSV3" make-tiny "$BASE" --preset tiny-smallvocab --seed 1 >"$WORK/make_tiny.out" \
  2>"$WORK/make_tiny.err"; then
  cat "$WORK/make_tiny.err"
  fail_setup "dsv3 make-tiny failed"
fi
[[ -f $BASE/model.safetensors ]] || fail_setup "make-tiny wrote no $BASE/model.safetensors"
timeout "$TIMEOUT_SECONDS" "$DSV3" logits -m "$BASE" --ids 1,2,3 --out "$WORK/base.npy" \
  2>"$WORK/base.err"
base_code=$?
if [[ $base_code -ne 0 ]]; then
  cat "$WORK/base.err"
  [[ $base_code -eq 124 ]] && fail_setup "dsv3 logits hangs (> ${TIMEOUT_SECONDS}s) on the unmodified checkpoint"
  fail_setup "dsv3 logits fails (exit code $base_code) on the unmodified checkpoint"
fi
[[ -s $WORK/base.npy ]] || fail_setup "dsv3 logits wrote no output for the unmodified checkpoint"
EMBED=model.embed_tokens.weight

# A fresh copy of the base checkpoint for one case; prints its path.
fresh_copy() {
  local copy=$WORK/cases/$1
  mkdir -p "$WORK/cases"
  cp -r "$BASE" "$copy"
  echo "$copy"
}

# run_case NAME MODEL_DIR EXPECTED_FRAGMENT [IDS]: dsv3 logits on MODEL_DIR must fail cleanly
# with a one-line message containing EXPECTED_FRAGMENT ("" = any).
run_case() {
  local name=$1 model=$2 fragment=$3 ids=${4:-1,2,3}
  local out=$WORK/out_$name.npy err=$WORK/err_$name.txt
  rm -f "$out"
  timeout "$TIMEOUT_SECONDS" "$DSV3" logits -m "$model" --ids "$ids" --out "$out" \
    >/dev/null 2>"$err"
  local code=$?
  local problems=()
  if [[ $code -eq 124 ]]; then
    problems+=("timed out after ${TIMEOUT_SECONDS}s")
  elif [[ $code -ne 1 ]]; then
    problems+=("exit code $code, expected 1")
  fi
  local lines
  lines=$(wc -l <"$err")
  if [[ $lines -ne 1 || $(tail -c 1 "$err" | od -An -c | tr -d ' ') != '\n' ]]; then
    problems+=("stderr is $lines lines, expected exactly one")
  fi
  local first_line
  first_line=$(head -n 1 "$err")
  if [[ $first_line != "dsv3 logits: error:"* ]]; then
    problems+=("stderr does not start with 'dsv3 logits: error:'")
  fi
  if [[ -n $fragment && $first_line != *"$fragment"* ]]; then
    problems+=("message does not mention '$fragment'")
  fi
  if [[ -e $out ]]; then
    problems+=("an output file was written")
  fi
  if [[ ${#problems[@]} -eq 0 ]]; then
    passed=$((passed + 1))
    echo "ok    $name: $first_line"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "FAIL  $name: $(printf '%s; ' "${problems[@]}")"
    sed 's/^/        stderr: /' "$err" | head -n 20
  fi
}

# --- the safetensors file ----------------------------------------------------------------------
c=$(fresh_copy truncated_half)
edit_safetensors "$c/model.safetensors" truncate half
run_case truncated_half "$c" "model.safetensors"

c=$(fresh_copy truncated_to_4_bytes)
edit_safetensors "$c/model.safetensors" truncate 4
run_case truncated_to_4_bytes "$c" "too short"

c=$(fresh_copy empty_safetensors)
: >"$c/model.safetensors"
run_case empty_safetensors "$c" "too short"

c=$(fresh_copy header_length_past_eof)
edit_safetensors "$c/model.safetensors" set-header-length past-eof
run_case header_length_past_eof "$c" "runs past the end of the file"

c=$(fresh_copy header_length_huge)
edit_safetensors "$c/model.safetensors" set-header-length 4611686018427387904
run_case header_length_huge "$c" "is absurd"

c=$(fresh_copy header_not_json)
edit_safetensors "$c/model.safetensors" raw-header '{"model.embed_tokens.weight": {"dtype": "BF'
run_case header_not_json "$c" "not valid JSON"

c=$(fresh_copy header_json_array)
edit_safetensors "$c/model.safetensors" raw-header '[1, 2, 3]'
run_case header_json_array "$c" "expected an object"

c=$(fresh_copy offsets_out_of_range)
edit_safetensors "$c/model.safetensors" offsets-past-end
run_case offsets_out_of_range "$c" "run past the end of the data"

c=$(fresh_copy begin_after_end)
edit_safetensors "$c/model.safetensors" begin-after-end
run_case begin_after_end "$c" "begin after they end"

c=$(fresh_copy overlapping_tensors)
edit_safetensors "$c/model.safetensors" overlap
run_case overlapping_tensors "$c" "overlap"

c=$(fresh_copy dtype_size_mismatch)
edit_safetensors "$c/model.safetensors" change-dtype
run_case dtype_size_mismatch "$c" "bytes, but shape"

c=$(fresh_copy unknown_dtype)
edit_safetensors "$c/model.safetensors" set-dtype "$EMBED" F7
run_case unknown_dtype "$c" 'unsupported dtype "F7"'

c=$(fresh_copy negative_shape)
edit_safetensors "$c/model.safetensors" set-shape "$EMBED" '[-512, 64]'
run_case negative_shape "$c" "negative"

c=$(fresh_copy missing_tensor)
edit_safetensors "$c/model.safetensors" drop "$EMBED"
run_case missing_tensor "$c" "$EMBED is missing"

c=$(fresh_copy wrong_shape)
edit_safetensors "$c/model.safetensors" flatten "$EMBED"
run_case wrong_shape "$c" "$EMBED has shape"

# --- sharded checkpoints -----------------------------------------------------------------------
# The index is written here from the single file's header: every tensor in shard 1, which is the
# single file renamed, except what each case changes.
write_index() {  # write_index DIR PYTHON_EXPR_FOR_SHARD_OF(name)
  "$PYTHON" - "$1" "$2" <<'PYTHON'
import json, struct, sys
directory, shard_of = sys.argv[1], sys.argv[2]
with open(directory + "/model-00001-of-00002.safetensors", "rb") as f:
    (length,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(length))
names = sorted(n for n in header if n != "__metadata__")
weight_map = {name: eval(shard_of, {"name": name, "names": names}) for name in names}
with open(directory + "/model.safetensors.index.json", "w") as f:
    json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)
PYTHON
}

shard1=model-00001-of-00002.safetensors
shard2=model-00002-of-00002.safetensors

c=$(fresh_copy index_works)
mv "$c/model.safetensors" "$c/$shard1"
write_index "$c" "'$shard1'"
if timeout "$TIMEOUT_SECONDS" "$DSV3" logits -m "$c" --ids 1,2,3 --out "$WORK/index.npy" \
  2>"$WORK/index.err" && cmp -s "$WORK/index.npy" "$WORK/base.npy"; then
  passed=$((passed + 1))
  echo "ok    index_works: the same logits through model.safetensors.index.json"
else
  failed=$((failed + 1))
  failures+=(index_works)
  echo "FAIL  index_works: a valid index checkpoint does not give the base logits"
  sed 's/^/        stderr: /' "$WORK/index.err" | head -n 20
fi

c=$(fresh_copy index_missing_shard)
mv "$c/model.safetensors" "$c/$shard1"
write_index "$c" "'$shard2' if name == names[-1] else '$shard1'"
run_case index_missing_shard "$c" "names shard \"$shard2\" which does not exist"

c=$(fresh_copy index_tensor_not_in_shard)
mv "$c/model.safetensors" "$c/$shard1"
cp "$c/$shard1" "$c/$shard2"
edit_safetensors "$c/$shard2" drop "$EMBED"
write_index "$c" "'$shard2' if name == '$EMBED' else '$shard1'"
run_case index_tensor_not_in_shard "$c" "does not hold it"

c=$(fresh_copy index_malformed)
mv "$c/model.safetensors" "$c/$shard1"
write_index "$c" "'$shard1'"
head -c 100 "$c/model.safetensors.index.json" >"$c/index.tmp"
mv "$c/index.tmp" "$c/model.safetensors.index.json"
run_case index_malformed "$c" "not valid JSON"

c=$(fresh_copy index_escapes_directory)
mv "$c/model.safetensors" "$c/$shard1"
write_index "$c" "'../base/model.safetensors'"
run_case index_escapes_directory "$c" "not a plain file name"

c=$(fresh_copy index_corrupt_shard)
mv "$c/model.safetensors" "$c/$shard1"
write_index "$c" "'$shard1'"
edit_safetensors "$c/$shard1" set-header-length past-eof
run_case index_corrupt_shard "$c" "$shard1: header length"

# --- the directory and config.json -------------------------------------------------------------
run_case no_such_directory "$WORK/does-not-exist" "does-not-exist"

c=$(fresh_copy no_weights)
rm "$c/model.safetensors"
run_case no_weights "$c" "no model.safetensors or model.safetensors.index.json"

c=$(fresh_copy config_missing)
rm "$c/config.json"
run_case config_missing "$c" "config.json"

c=$(fresh_copy config_truncated)
head -c 40 "$BASE/config.json" >"$c/config.json"
run_case config_truncated "$c" "config.json"

c=$(fresh_copy config_not_object)
echo '[1, 2, 3]' >"$c/config.json"
run_case config_not_object "$c" "config.json"

c=$(fresh_copy config_wrong_type)
edit_config "$c/config.json" hidden_size '"sixty-four"'
run_case config_wrong_type "$c" "hidden_size"

c=$(fresh_copy config_negative_size)
edit_config "$c/config.json" hidden_size '-64'
run_case config_negative_size "$c" "hidden_size"

c=$(fresh_copy config_zero_heads)
edit_config "$c/config.json" num_attention_heads '0'
run_case config_zero_heads "$c" "num_attention_heads"

# A config that asks for more layers than the weights hold: the first absent tensor is named.
c=$(fresh_copy config_more_layers)
edit_config "$c/config.json" num_hidden_layers '3'
run_case config_more_layers "$c" "model.layers.2."

# A config whose sizes disagree with the weights.
c=$(fresh_copy config_wider_than_weights)
edit_config "$c/config.json" vocab_size '1024'
run_case config_wider_than_weights "$c" "has shape"

# --- token ids outside the vocabulary (must not read past the embedding) ------------------------
run_case token_id_past_vocab "$BASE" "outside the vocabulary" "1,2,512"
run_case token_id_huge "$BASE" "" "1,2147483647"

echo
echo "$passed passed, $failed failed"
if [[ $failed -ne 0 ]]; then
  echo "failed: ${failures[*]}"
  exit 1
fi
exit 0
