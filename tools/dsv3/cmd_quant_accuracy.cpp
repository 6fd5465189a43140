// dsv3 quant-accuracy --reference REF_DIR DIR... [--tokens N] [--text FILE] [--reference-routes]
//                    [--min-top1 PCT] [--max-mean-kl X] [--json]
// How far quantized models are from a reference (the F32 checkpoint they came from): over one
// fixed token sequence, fed teacher-forced, the KL divergence KL(P_ref || P_model) of every
// position's next-token distribution (mean and max, in nats) and the share of positions whose
// most likely next token agrees (top-1), or where the reference's one is among the model's five
// most likely (top-5). The reference's mean top-1 probability says how decisive its choices
// are: on a random checkpoint the distributions are nearly flat (a top-1 probability of a few
// in 10^4 over 129k tokens), so near-ties make top-1 agreement fragile under any rounding.
// The sequence is BOS and ids spread over the vocabulary, or with --text the file's text
// tokenized by the reference's tokenizer (BOS first, cut at --tokens), for a checkpoint whose
// predictions mean something on text (bench/peaked_head_accuracy.sh makes one).
// --reference-routes: every model is measured a second time with the reference's routing
// replayed (model/moe.h RoutingLog; the weights of the experts still from the model's own router
// scores), and the row says how many of its own (token, layer) choices differed. On a random
// checkpoint a third of the routings flip under BF16 rounding alone, and those flips, not the
// matrix products, make most of the disagreement; the thresholds then apply to these rows.
// Exits 1 when a model misses a threshold (for tests).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <span>
#include <vector>

#include "args.h"
#include "commands.h"
#include "spread_token_ids.h"
#include "model/config.h"
#include "model/model.h"
#include "model/moe.h"
#include "tokenizer/tokenizer.h"
#include "sampling_flags.h"
#include "util/error.h"

namespace dsv3::cli {

namespace {


// log-softmax of one row, in double.
std::vector<double> log_probabilities(const float* logits, int64_t vocab) {
  const double largest = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - largest);
  const double log_sum = largest + std::log(sum);
  std::vector<double> out(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) out[i] = double(logits[i]) - log_sum;
  return out;
}

struct Agreement {
  double mean_kl = 0, max_kl = 0, top1 = 0, top5 = 0;
  double reference_top1_probability = 0;  // mean over positions
};

// Whether `token` is among the `k` largest of row (ties to the lower index, as max_element).
bool among_top(const float* row, int64_t vocab, int64_t token, int64_t k) {
  int64_t above = 0;
  for (int64_t i = 0; i < vocab && above < k; ++i)
    above += row[i] > row[token] || (row[i] == row[token] && i < token);
  return above < k;
}

Agreement compare(const std::vector<float>& reference, const std::vector<float>& logits,
                  int64_t positions, int64_t vocab) {
  Agreement result;
  int64_t agree = 0, agree5 = 0;
  for (int64_t p = 0; p < positions; ++p) {
    const float* ref_row = reference.data() + p * vocab;
    const float* row = logits.data() + p * vocab;
    const std::vector<double> log_p = log_probabilities(ref_row, vocab);
    const std::vector<double> log_q = log_probabilities(row, vocab);
    double kl = 0.0;
    for (int64_t i = 0; i < vocab; ++i) kl += std::exp(log_p[i]) * (log_p[i] - log_q[i]);
    result.mean_kl += kl / double(positions);
    result.max_kl = std::max(result.max_kl, kl);
    const int64_t reference_top = std::max_element(ref_row, ref_row + vocab) - ref_row;
    agree += reference_top == std::max_element(row, row + vocab) - row;
    agree5 += among_top(row, vocab, reference_top, 5);
    result.reference_top1_probability += std::exp(log_p[reference_top]) / double(positions);
  }
  result.top1 = 100.0 * double(agree) / double(positions);
  result.top5 = 100.0 * double(agree5) / double(positions);
  return result;
}

// Every position's logits in one pass; with a log, its routing recorded or replayed.
std::vector<float> all_logits(const CausalLM& model, const std::vector<int32_t>& ids,
                              RoutingLog* log = nullptr) {
  CausalLM pass = model;
  pass.set_routing_log(log);
  LatentCache cache = pass.new_cache(int64_t(ids.size()) + 1);
  std::vector<float> logits = pass.forward(std::span(ids), cache, 0);
  pass.set_routing_log(nullptr);
  return logits;
}

std::string weights_dtype(const CausalLM& model) {
  return std::string(dtype_name(model.model().weights().layers[0].self_attn.kv_b_proj.dtype));
}

// The first `tokens` ids of the text in `path` as the reference's tokenizer encodes it, BOS first.
std::vector<int32_t> text_token_ids(const std::string& path, const std::string& model_dir,
                                    int64_t tokens) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error("--text: cannot read " + path);
  std::stringstream text;
  text << file.rdbuf();
  std::vector<int32_t> ids = Tokenizer::from_dir(model_dir).encode(text.str(), true);
  if (int64_t(ids.size()) < tokens)
    throw Error("--text: " + path + " has " + std::to_string(ids.size()) +
                " tokens, fewer than --tokens " + std::to_string(tokens));
  ids.resize(size_t(tokens));
  return ids;
}

}  // namespace

int run_quant_accuracy(const CommandArgs& argv) {
  Args args(argv, {"--reference", "--tokens", "--text", "--min-top1", "--max-mean-kl", "--threads"},
            {"--json", "--reference-routes", "--help"});
  if (args.has("--help") || args.positional().empty()) {
    std::fprintf(stderr,
                 "usage: dsv3 quant-accuracy --reference REF_DIR DIR... [--tokens N] "
                 "[--text FILE] [--reference-routes] [--min-top1 PCT] [--max-mean-kl X] [--json]\n");
    return args.has("--help") ? 0 : 2;
  }
  const std::string reference_dir = args.require("--reference");
  const int64_t tokens = args.get_int("--tokens", 128);
  if (tokens < 2) throw Error("--tokens must be >= 2");
  const double min_top1 = args.get_double("--min-top1", 0.0);
  const double max_mean_kl = args.get_double("--max-mean-kl", INFINITY);
  apply_thread_flag(args);

  const int64_t vocab = Config::from_file(reference_dir + "/config.json").vocab_size;
  const std::vector<int32_t> ids = args.has("--text")
                                        ? text_token_ids(args.get("--text"), reference_dir, tokens)
                                        : spread_token_ids(tokens, vocab, 987654321);
  const bool reference_routes = args.has("--reference-routes");
  RoutingLog routes;  // the reference's choices, recorded
  std::string reference_dtype;
  std::vector<float> reference;
  {  // one model in memory at a time
    const CausalLM reference_model = CausalLM::from_pretrained(reference_dir);
    reference_dtype = weights_dtype(reference_model);
    reference = all_logits(reference_model, ids, reference_routes ? &routes : nullptr);
  }

  bool all_pass = true;
  nlohmann::json rows = nlohmann::json::array();
  const bool json = args.has("--json");
  if (!json)
    std::printf("%-40s %-8s %-9s %12s %12s %8s %8s %9s   (reference %s, %s, %lld tokens)\n",
                "model", "weights", "routing", "mean KL", "max KL", "top-1 %", "top-5 %",
                "flips %", reference_dir.c_str(), reference_dtype.c_str(), (long long)tokens);
  double reference_top1_probability = 0;
  for (const std::string& dir : args.positional()) {
    const CausalLM model = CausalLM::from_pretrained(dir);
    const std::string dtype = weights_dtype(model);
    for (const bool replay : {false, true}) {
      if (replay && !reference_routes) break;
      routes.mode = RoutingLog::Mode::kReplay;
      routes.differing = routes.choices = 0;
      const std::vector<float> logits = all_logits(model, ids, replay ? &routes : nullptr);
      if (logits.size() != reference.size())
        throw Error(dir + ": vocabulary differs from the reference");
      const Agreement a = compare(reference, logits, tokens, vocab);
      // Thresholds judge the rows with the reference's routes when they are measured.
      const bool judged = replay || !reference_routes;
      const bool pass = !judged || (a.top1 >= min_top1 && a.mean_kl <= max_mean_kl);
      all_pass = all_pass && pass;
      reference_top1_probability = a.reference_top1_probability;
      const char* routing = replay ? "reference" : "own";
      const double flips = replay ? 100.0 * double(routes.differing) / double(routes.choices) : 0.0;
      nlohmann::json row = {{"model", dir},
                            {"weights_dtype", dtype},
                            {"routing", routing},
                            {"mean_kl", a.mean_kl},
                            {"max_kl", a.max_kl},
                            {"top1_pct", a.top1},
                            {"top5_pct", a.top5},
                            {"reference_top1_probability", a.reference_top1_probability},
                            {"pass", pass}};
      if (replay) row["routing_differing_pct"] = flips;
      rows.push_back(row);
      if (!json) {
        char flips_text[32] = "";
        if (replay) std::snprintf(flips_text, sizeof flips_text, "%.1f", flips);
        std::printf("%-40s %-8s %-9s %12.3g %12.3g %8.2f %8.2f %9s%s\n", dir.c_str(), dtype.c_str(),
                    routing, a.mean_kl, a.max_kl, a.top1, a.top5, flips_text, pass ? "" : "   FAIL");
      }
    }
  }
  if (!args.has("--json"))
    std::printf("(the reference's most likely next token has probability %.4f on average)\n",
                reference_top1_probability);
  if (args.has("--json")) std::printf("%s\n", rows.dump().c_str());
  return all_pass ? 0 : 1;
}

}  // namespace dsv3::cli
