// dsv3 perplexity -m DIR (-f FILE | --ids 0,5,17,...) [--ctx N] [--stride S]
// Perplexity of a causal LM over a text with a sliding window, as in transformers' perplexity
// guide: windows of at most N tokens start every S tokens, and each window scores only the
// tokens no earlier window scored (the rest of it is context, labels -100). The text is encoded
// as tokenizer(text) does (with the BOS). Prints `perplexity`, the scored tokens and tokens/s.
//
// The guide weights each window's mean loss by (valid labels - 1); here each predicted token
// counts exactly once, so the result is exp(total NLL / predicted tokens).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "api/causal_lm.h"
#include "api/generation.h"
#include "api/loss.h"
#include "args.h"
#include "commands.h"
#include "number_lists.h"
#include "sampling_flags.h"
#include "util/error.h"

namespace dsv3::cli {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot open");
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// Sum of -log p(ids[t + 1] | ids[..t]) over the targets t + 1 >= first_target of one window.
double window_nll(const CausalLM& model, std::span<const int32_t> window, int64_t first_target) {
  LatentCache cache = model.new_cache(int64_t(window.size()));
  const std::vector<float> hidden = model.model().forward(window, cache);
  const int64_t width = model.config().hidden_size, vocab = model.config().vocab_size;
  const int64_t rows = int64_t(window.size()) - 1;  // positions that predict a next token
  constexpr int64_t kRowsPerProduct = 32;           // bounds the logits held at once
  double nll = 0.0;
  for (int64_t start = std::max<int64_t>(first_target - 1, 0); start < rows;
       start += kRowsPerProduct) {
    const int64_t count = std::min(kRowsPerProduct, rows - start);
    const std::vector<float> logits = model.logits_of(hidden.data() + start * width, count);
    for (int64_t i = 0; i < count; ++i)
      nll += api::negative_log_likelihood(logits.data() + i * vocab, vocab, window[start + i + 1]);
  }
  return nll;
}

}  // namespace

int run_perplexity(const CommandArgs& argv) {
  Args args(argv, {"--model", "--file", "--ids", "--ctx", "--stride", "--activations", "--attention-precision"}, {"--help"},
            {{"-m", "--model"}, {"-f", "--file"}});
  if (args.has("--help")) {
    std::fprintf(
        stderr,
        "usage: dsv3 perplexity -m DIR (-f FILE | --ids 0,5,17,...) [--ctx N] [--stride S]\n"
        "       [--activations f32|bf16|auto] [--attention-precision f32|bf16]\n");
    return 0;
  }
  const std::string dir = args.require("--model");
  apply_activation_flag(args);
  if (args.has("--file") == args.has("--ids")) throw Error("pass exactly one of -f FILE and --ids");
  const api::CausalLM lm = api::CausalLM::from_pretrained(dir);
  const std::vector<int32_t> ids =
      args.has("--ids") ? parse_id_row(args.get("--ids"), "--ids")
                        : api::Tokenizer::from_dir(dir).encode(read_file(args.get("--file")), true);
  if (ids.size() < 2)
    throw Error("perplexity needs at least 2 tokens, the text has " + std::to_string(ids.size()));
  const int64_t ctx =
      args.get_int("--ctx", std::min<int64_t>(lm.config().max_position_embeddings, 4096));
  const int64_t stride = args.get_int("--stride", std::max<int64_t>(ctx / 2, 1));
  if (ctx < 2) throw Error("--ctx must be at least 2");
  if (stride < 1 || stride > ctx) throw Error("--stride must be in [1, --ctx]");

  const auto started = std::chrono::steady_clock::now();
  const int64_t total = int64_t(ids.size());
  double nll = 0.0;
  int64_t scored = 0, processed = 0, previous_end = 0;
  for (int64_t begin = 0; begin < total; begin += stride) {
    const int64_t end = std::min(begin + ctx, total);
    // Targets are the window's tokens past previous_end (the first window: all but the first).
    const int64_t first_target = std::max<int64_t>(previous_end - begin, 1);
    nll += window_nll(lm.engine(), std::span(ids).subspan(begin, end - begin), first_target);
    scored += end - begin - first_target;
    processed += end - begin;
    previous_end = end;
    if (end == total) break;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("perplexity %.9g\n", std::exp(nll / double(scored)));
  std::printf("scored_tokens %lld of %lld (ctx %lld, stride %lld)\n", (long long)scored,
              (long long)total, (long long)ctx, (long long)stride);
  std::printf("tokens/s %.2f\n", double(processed) / std::max(seconds, 1e-9));
  return 0;
}

}  // namespace dsv3::cli
