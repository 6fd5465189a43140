// dsv3 logits -m DIR --ids 0,5,17 --out FILE.npy [--last] [--chunk N]
// Writes float32 logits [len(ids), vocab_size] (or [1, vocab_size] with --last). --chunk N feeds
// the ids N at a time through the cache (incremental decoding must give the same logits).
#include <charconv>
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "io/npy.h"
#include "model/model.h"
#include "util/error.h"

namespace dsv3::cli {

std::vector<int32_t> parse_id_list(const std::string& text) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    int64_t id = 0;
    auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), id);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() || id < 0 ||
        id > INT32_MAX)
      throw Error("--ids: \"" + item + "\" is not a token id (expected e.g. --ids 0,5,17)");
    ids.push_back(int32_t(id));
    start = end + 1;
  }
  return ids;
}

int run_logits(const CommandArgs& argv) {
  Args args(argv, {"--model", "--ids", "--out", "--chunk"}, {"--last", "--help"}, {{"-m", "--model"}});
  if (args.has("--help")) {
    std::fprintf(stderr, "usage: dsv3 logits -m DIR --ids 0,5,17 --out FILE.npy [--last] [--chunk N]\n");
    return 0;
  }
  const std::string dir = args.require("--model");
  const std::vector<int32_t> ids = parse_id_list(args.require("--ids"));
  const std::string out = args.require("--out");
  const int64_t tokens = int64_t(ids.size());
  const int64_t chunk = args.get_int("--chunk", tokens);
  if (chunk <= 0) throw Error("--chunk must be positive");
  const bool last_only = args.has("--last");

  CausalLM model = CausalLM::from_pretrained(dir);
  const int64_t vocab = model.config().vocab_size;
  LatentCache cache = model.new_cache(tokens);
  std::vector<float> logits;
  logits.reserve(size_t(tokens * vocab));
  for (int64_t start = 0; start < tokens; start += chunk) {
    const int64_t count = std::min(chunk, tokens - start);
    std::span<const int32_t> piece(ids.data() + start, size_t(count));
    const bool final_piece = start + count == tokens;
    // With --last, only the very last row is needed.
    if (last_only && !final_piece) {
      model.forward(piece, cache, 1);
      continue;
    }
    std::vector<float> piece_logits = model.forward(piece, cache, last_only ? 1 : 0);
    logits.insert(logits.end(), piece_logits.begin(), piece_logits.end());
  }
  const int64_t rows = int64_t(logits.size()) / vocab;
  write_npy(out, {rows, vocab}, logits.data());
  return 0;
}

}  // namespace dsv3::cli
