#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench_decode.h"
#include "bench_formats.h"
#include "generate/sampler.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/machine_probe.h"
#include "median.h"
#include "model/config.h"
#include "model/footprint.h"
#include "model/model.h"
#include "sampling_flags.h"
#include "spread_token_ids.h"
#include "tensor/thread_pool.h"
#include "util/error.h"

namespace dsv3::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Resident memory of the process now (the previous model is unmapped by then).
double resident_mb() {
  std::ifstream statm("/proc/self/statm");
  long long pages = 0, resident = 0;
  statm >> pages >> resident;
  return double(resident) * double(sysconf(_SC_PAGESIZE)) / 1e6;
}

double safetensors_mb(const std::string& dir) {
  double bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".safetensors") bytes += double(entry.file_size());
  return bytes / 1e6;
}

// One loaded model and its figures, one entry per run.
struct ModelRow {
  std::string dir, weights_dtype;
  double file_mb = 0, resident_mb = 0, bytes_per_token_mb = 0;
  std::unique_ptr<CausalLM> model;
  std::vector<double> prefill_tok_s, decode_tok_s;
  std::vector<double> bandwidth_gb_s;          // probed around each decode run
  std::vector<double> sampled_bandwidth_gb_s;  // sampled between its tokens (decode_sampled)
};

// Loads `dir` and touches every weight once (a warm-up prefill); resident_mb is what the
// process grew by.
ModelRow load(const std::string& dir, const std::vector<int32_t>& prompt) {
  ModelRow row;
  row.dir = dir;
  row.file_mb = safetensors_mb(dir);
  const double resident_before = resident_mb();
  row.model = std::make_unique<CausalLM>(CausalLM::from_pretrained(dir));
  const CausalLM& model = *row.model;
  row.weights_dtype =
      std::string(dtype_name(model.model().weights().layers[0].self_attn.kv_b_proj.dtype));
  row.bytes_per_token_mb =
      double(model_footprint(model.config(), model.model().weights()).decode_bytes_per_token) / 1e6;
  LatentCache cache = model.new_cache(int64_t(prompt.size()) + 1);
  model.forward(prompt, cache, 1);
  row.resident_mb = resident_mb() - resident_before;
  return row;
}

// One run: prefill the prompt into an empty cache, then decode gen_tokens greedily from an
// empty cache, the bandwidth probed just before and after and sampled between the tokens (as in
// `dsv3 bench` with one model).
void run_once(ModelRow& row, const std::vector<int32_t>& prompt, int64_t gen_tokens,
              const kernels::ReadBandwidthProbe& probe) {
  const CausalLM& model = *row.model;
  LatentCache cache = model.new_cache(int64_t(prompt.size()) + gen_tokens + 1);
  const auto start = Clock::now();
  const std::vector<float> logits = model.forward(prompt, cache, 1);
  row.prefill_tok_s.push_back(double(prompt.size()) / seconds_since(start));
  const int32_t first = argmax(logits);
  cache.clear();  // decode from depth 0, as `dsv3 bench` with one model
  row.bandwidth_gb_s.push_back(probe.measure_around([&] {
    const SampledDecode run = decode_sampled(model, first, cache, gen_tokens, probe);
    row.decode_tok_s.push_back(double(gen_tokens) / run.seconds);
    row.sampled_bandwidth_gb_s.push_back(run.bandwidth_gb_s);
  }));
}

}  // namespace

// All models stay loaded and every run measures each in turn (round robin), so a slow minute
// of a shared host falls on all of them alike and the ratios between models stay fair.
int run_bench_models(const Args& args) {
  const std::vector<std::string> dirs = args.get_all("--model");
  const int64_t prompt_tokens = args.get_int("--prompt", 512);
  const int64_t gen_tokens = args.get_int("--gen", 32);
  const int64_t repeats = args.get_int("--repeat", 1);
  if (prompt_tokens < 1 || gen_tokens < 1 || repeats < 1 || repeats > 1000)
    throw Error("--prompt, --gen and --repeat (up to 1000) must be >= 1");
  if (args.has("--ctx-depth")) throw Error("--ctx-depth takes one model");
  if (args.has("--profile")) throw Error("--profile takes one model");
  apply_thread_flag(args);
  apply_weight_memory_flag(args);
  const bool json_output = args.has("--json");
  if (!json_output) std::fprintf(stderr, "measuring memory bandwidth ...\n");
  const kernels::ReadBandwidthProbe probe;
  std::vector<ModelRow> rows;
  for (const std::string& dir : dirs) {
    if (!json_output) std::fprintf(stderr, "loading %s ...\n", dir.c_str());
    const int64_t vocab = Config::from_file(dir + "/config.json").vocab_size;
    rows.push_back(load(dir, spread_token_ids(prompt_tokens, vocab, 12345)));
  }
  for (int64_t run = 0; run < repeats; ++run) {
    if (!json_output)
      std::fprintf(stderr, "run %lld of %lld ...\n", (long long)run + 1, (long long)repeats);
    for (ModelRow& row : rows) {
      run_once(row, spread_token_ids(prompt_tokens, row.model->config().vocab_size, 12345),
               gen_tokens, probe);
    }
  }
  const double first_decode = median(rows[0].decode_tok_s);
  std::vector<double> all_bandwidths;
  for (const ModelRow& row : rows)
    all_bandwidths.insert(all_bandwidths.end(), row.bandwidth_gb_s.begin(), row.bandwidth_gb_s.end());
  const double bandwidth = median(all_bandwidths);
  nlohmann::json result = nlohmann::json::array();
  for (const ModelRow& row : rows) {
    const double decode = median(row.decode_tok_s);
    // Each decode run against the roofline of its own probes, and of the bandwidth sampled
    // between its tokens; the medians of those shares.
    const double bytes_per_token = row.bytes_per_token_mb * 1e6;
    const std::vector<double> roofline_pct_runs =
        roofline_shares(row.decode_tok_s, bytes_per_token, row.bandwidth_gb_s);
    const std::vector<double> sampled_pct_runs =
        roofline_shares(row.decode_tok_s, bytes_per_token, row.sampled_bandwidth_gb_s);
    // The ratio to the first model within each run, then its median over the runs.
    std::vector<double> ratios;
    for (size_t run = 0; run < row.decode_tok_s.size(); ++run)
      ratios.push_back(row.decode_tok_s[run] / rows[0].decode_tok_s[run]);
    result.push_back({{"model", row.dir},
                      {"weights_dtype", row.weights_dtype},
                      {"file_mb", row.file_mb},
                      {"resident_mb", row.resident_mb},
                      {"weight_mb_per_token", row.bytes_per_token_mb},
                      {"prefill_tok_s", median(row.prefill_tok_s)},
                      {"decode_tok_s", decode},
                      {"decode_vs_first", decode / first_decode},
                      {"decode_vs_first_runs", ratios},
                      {"decode_tok_s_runs", row.decode_tok_s},
                      {"decode_roofline_pct", median(roofline_pct_runs)},
                      {"decode_roofline_pct_runs", roofline_pct_runs},
                      {"bandwidth_gb_s_runs", row.bandwidth_gb_s},
                      {"decode_roofline_pct_between_tokens", median(sampled_pct_runs)},
                      {"decode_roofline_pct_between_tokens_runs", sampled_pct_runs},
                      {"bandwidth_gb_s_between_tokens_runs", row.sampled_bandwidth_gb_s}});
  }
  if (json_output) {
    std::printf("%s\n",
                nlohmann::json{{"threads", ThreadPool::global().num_threads()},
                               {"kernels", std::string(kernels::isa_name(kernels::active_isa()))},
                               {"bandwidth_gb_s", bandwidth},
                               {"prompt_tokens", prompt_tokens},
                               {"gen_tokens", gen_tokens},
                               {"repeat", repeats},
                               {"models", result}}
                    .dump()
                    .c_str());
    return 0;
  }
  std::printf(
      "%d threads, %s kernels, read bandwidth %.1f GB/s (median of the probes beside the decode "
      "runs; each run's roofline share uses its own), prompt %lld, gen %lld%s\n",
              ThreadPool::global().num_threads(),
              std::string(kernels::isa_name(kernels::active_isa())).c_str(), bandwidth,
              (long long)prompt_tokens, (long long)gen_tokens,
              repeats > 1
                  ? (", medians of " + std::to_string(repeats) + " runs, models in turn").c_str()
                  : "");
  std::printf("%-36s %-8s %9s %9s %9s %11s %10s %8s %9s %9s\n", "model", "weights", "file MB",
              "RSS MB", "MB/token", "prefill t/s", "decode t/s", "vs first", "roofline",
              "sampled");
  for (const auto& row : result) {
    std::printf("%-36s %-8s %9.0f %9.0f %9.0f %11.1f %10.1f %7.2fx %8.1f%% %8.1f%%\n",
                row["model"].get<std::string>().c_str(),
                row["weights_dtype"].get<std::string>().c_str(), row["file_mb"].get<double>(),
                row["resident_mb"].get<double>(), row["weight_mb_per_token"].get<double>(),
                row["prefill_tok_s"].get<double>(), row["decode_tok_s"].get<double>(),
                row["decode_vs_first"].get<double>(), row["decode_roofline_pct"].get<double>(),
                row["decode_roofline_pct_between_tokens"].get<double>());
  }
  std::printf("(roofline: against the probes around each decode run; sampled: against the "
              "bandwidth sampled between its tokens)\n");
  if (repeats > 1) {
    std::printf("decode vs first, run by run:\n");
    for (const auto& row : result) {
      std::printf("  %-34s", row["model"].get<std::string>().c_str());
      for (double ratio : row["decode_vs_first_runs"]) std::printf(" %.2fx", ratio);
      std::printf("\n");
    }
  }
  return 0;
}

}  // namespace dsv3::cli
