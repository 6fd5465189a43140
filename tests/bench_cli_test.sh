#!/usr/bin/env bash
# `dsv3 bench` end to end on the tiny preset: the --json object carries every documented field
# with sane values, --repeat reports each run, --profile prints the phases of the forward pass
# (their shares adding up to 100 %), and bad flags are clear errors.
#
# usage: bash tests/bench_cli_test.sh DSV3_BINARY BUILD_DIR
set -uo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: bash tests/bench_cli_test.sh DSV3_BINARY BUILD_DIR" >&2
  exit 2
fi
DSV3=$1
BUILD_DIR=$2
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3

mkdir -p "$BUILD_DIR"
WORK=$(mktemp -d "$BUILD_DIR/bench_cli.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

"$DSV3" make-tiny "$WORK/tiny" --preset tiny --dtype bf16 --seed 3 2>/dev/null || { echo "make-tiny failed" >&2; exit 1; }

"$DSV3" bench -m "$WORK/tiny" --prompt 24 --gen 3 --repeat 3 --json >"$WORK/bench.json" 2>"$WORK/bench.err" ||
  fail "bench --json: $(cat "$WORK/bench.err")"
$PYTHON - "$WORK/bench.json" <<'PYTHON' || fail "bench --json fields"
import json, sys
result = json.load(open(sys.argv[1]))
for key in ["prefill_tok_s", "decode_tok_s", "ttft_ms", "peak_rss_mb", "cache_bytes_per_token",
            "bandwidth_gb_s", "weight_bytes_per_token", "roofline_decode_tok_s", "peak_gflops",
            "prefill_gflops"]:
    assert key in result and result[key] > 0, (key, result.get(key))
assert result["repeat"] == 3, result["repeat"]
for key in ["prefill_tok_s_runs", "decode_tok_s_runs"]:
    runs = result[key]
    assert len(runs) == 3 and all(r > 0 for r in runs), (key, runs)
# The reported figure is the median run.
assert sorted(result["prefill_tok_s_runs"])[1] == result["prefill_tok_s"], result
# Every decode run has its own bandwidth probe, and its share of that roofline; the figure is
# their median, and the best probe is at least every other.
bandwidths, shares = result["bandwidth_gb_s_runs"], result["decode_roofline_pct_runs"]
assert len(bandwidths) == 3 and len(shares) == 3, result
for rate, bandwidth, share in zip(result["decode_tok_s_runs"], bandwidths, shares):
    expected = 100 * rate * result["weight_bytes_per_token"] / (bandwidth * 1e9)
    assert abs(share - expected) < 1e-6 * expected, (share, expected)
assert sorted(shares)[1] == result["decode_roofline_pct"], result
assert sorted(bandwidths)[1] == result["bandwidth_gb_s"], result
assert result["bandwidth_gb_s_best"] >= max(bandwidths), result
assert 0 < result["decode_roofline_pct_of_best"] <= max(shares) * (1 + 1e-9), result
# And the bandwidth sampled between its tokens, with the run's share of that roofline.
sampled = result["bandwidth_gb_s_between_tokens_runs"]
sampled_shares = result["decode_roofline_pct_between_tokens_runs"]
assert len(sampled) == 3 and len(sampled_shares) == 3 and min(sampled) > 0, result
for rate, bandwidth, share in zip(result["decode_tok_s_runs"], sampled, sampled_shares):
    expected = 100 * rate * result["weight_bytes_per_token"] / (bandwidth * 1e9)
    assert abs(share - expected) < 1e-6 * expected, (share, expected)
assert sorted(sampled_shares)[1] == result["decode_roofline_pct_between_tokens"], result
assert sorted(sampled)[1] == result["bandwidth_gb_s_between_tokens"], result
PYTHON

"$DSV3" bench -m "$WORK/tiny" --prompt 24 --gen 3 --profile >"$WORK/profile.txt" 2>/dev/null ||
  fail "bench --profile"
$PYTHON - "$WORK/profile.txt" <<'PYTHON' || fail "bench --profile phases: $(cat "$WORK/profile.txt")"
import re, sys
text = open(sys.argv[1]).read()
for title in ["prefill phases", "decode phases per token"]:
    assert title in text, title
    lines = text.split(title, 1)[1].splitlines()[1:]
    block = []
    for line in lines:
        if not line.startswith("  "):
            break
        block.append(line)
    shares = [float(re.search(r"ms +([0-9.]+)%", line).group(1)) for line in block]
    names = [line.split()[0] for line in block]
    assert "lm_head" in names and "attn.o_proj" in names, names
    assert abs(sum(shares) - 100.0) < 1.0, shares
PYTHON

# Several models: loaded together, measured in turn, one row each with run-by-run ratios.
"$DSV3" quantize -m "$WORK/tiny" -o "$WORK/tiny-q8" --type q8 >/dev/null 2>&1 || fail "quantize"
"$DSV3" bench -m "$WORK/tiny" -m "$WORK/tiny-q8" --prompt 16 --gen 3 --repeat 2 --json \
  >"$WORK/models.json" 2>"$WORK/models.err" || fail "bench -m -m: $(cat "$WORK/models.err")"
$PYTHON - "$WORK/models.json" <<'PYTHON' || fail "bench -m -m --json fields"
import json, sys
result = json.load(open(sys.argv[1]))
assert result["repeat"] == 2, result
first, second = result["models"]
assert first["decode_vs_first_runs"] == [1.0, 1.0], first
assert second["weights_dtype"] == "Q8" and len(second["decode_vs_first_runs"]) == 2, second
for row in (first, second):
    assert row["decode_tok_s"] > 0 and row["prefill_tok_s"] > 0 and row["file_mb"] > 0, row
    # Each decode run against the bandwidth probed beside it.
    assert len(row["bandwidth_gb_s_runs"]) == 2 and len(row["decode_roofline_pct_runs"]) == 2, row
    for rate, bandwidth, share in zip(row["decode_tok_s_runs"], row["bandwidth_gb_s_runs"],
                                      row["decode_roofline_pct_runs"]):
        expected = 100 * rate * row["weight_mb_per_token"] / (bandwidth * 1e3)
        assert abs(share - expected) < 1e-6 * expected, (share, expected)
    # And against the bandwidth sampled between its tokens.
    sampled, sampled_shares = (row["bandwidth_gb_s_between_tokens_runs"],
                               row["decode_roofline_pct_between_tokens_runs"])
    assert len(sampled) == 2 and len(sampled_shares) == 2 and min(sampled) > 0, row
    for rate, bandwidth, share in zip(row["decode_tok_s_runs"], sampled, sampled_shares):
        expected = 100 * rate * row["weight_mb_per_token"] / (bandwidth * 1e3)
        assert abs(share - expected) < 1e-6 * expected, (share, expected)
    median = row["decode_roofline_pct_between_tokens"]
    assert abs(sum(sampled_shares) / 2 - median) <= 1e-9 * median, row
PYTHON

for bad in "--repeat 0" "--repeat x" "--gen 0"; do
  # shellcheck disable=SC2086
  if "$DSV3" bench -m "$WORK/tiny" $bad >/dev/null 2>"$WORK/bad.err"; then
    fail "bench $bad succeeded"
  elif ! grep -q "error" "$WORK/bad.err"; then
    fail "bench $bad: no error message"
  fi
done

if "$DSV3" bench -m "$WORK/tiny" -m "$WORK/tiny-q8" --profile >/dev/null 2>"$WORK/bad.err"; then
  fail "bench --profile with two models succeeded"
fi

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "bench cli: all checks passed"
