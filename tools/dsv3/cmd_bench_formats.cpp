#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench_formats.h"
#include "generate/sampler.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/machine_probe.h"
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


struct ModelRow {
  std::string dir, weights_dtype;
  double file_mb = 0, resident_mb = 0, bytes_per_token_mb = 0;
  double prefill_tok_s = 0, decode_tok_s = 0;
};

ModelRow measure(const std::string& dir, int64_t prompt_tokens, int64_t gen_tokens) {
  ModelRow row;
  row.dir = dir;
  row.file_mb = safetensors_mb(dir);
  CausalLM model = CausalLM::from_pretrained(dir);
  row.weights_dtype = std::string(dtype_name(model.model().weights().layers[0].self_attn.kv_b_proj.dtype));
  row.bytes_per_token_mb = double(model_footprint(model.config(), model.model().weights()).decode_bytes_per_token) / 1e6;
  LatentCache cache = model.new_cache(prompt_tokens + gen_tokens + 1);
  const std::vector<int32_t> prompt = spread_token_ids(prompt_tokens, model.config().vocab_size, 12345);
  model.forward(prompt, cache, 1);  // warm-up: touches every weight
  cache.clear();
  auto start = Clock::now();
  std::vector<float> logits = model.forward(prompt, cache, 1);
  row.prefill_tok_s = double(prompt_tokens) / seconds_since(start);
  int32_t token = argmax(logits);
  start = Clock::now();
  for (int64_t i = 0; i < gen_tokens; ++i) {
    logits = model.forward(std::span(&token, 1), cache, 1);
    token = argmax(logits);
  }
  row.decode_tok_s = double(gen_tokens) / seconds_since(start);
  row.resident_mb = resident_mb();
  return row;
}

}  // namespace

int run_bench_models(const Args& args) {
  const std::vector<std::string> dirs = args.get_all("--model");
  const int64_t prompt_tokens = args.get_int("--prompt", 512);
  const int64_t gen_tokens = args.get_int("--gen", 32);
  if (prompt_tokens < 1 || gen_tokens < 1) throw Error("--prompt and --gen must be >= 1");
  if (args.has("--ctx-depth")) throw Error("--ctx-depth takes one model");
  apply_thread_flag(args);
  apply_weight_memory_flag(args);
  const bool json_output = args.has("--json");
  if (!json_output) std::fprintf(stderr, "measuring memory bandwidth ...\n");
  const double bandwidth = kernels::measure_read_bandwidth();
  std::vector<ModelRow> rows;
  for (const std::string& dir : dirs) {
    if (!json_output) std::fprintf(stderr, "%s ...\n", dir.c_str());
    rows.push_back(measure(dir, prompt_tokens, gen_tokens));
  }
  nlohmann::json result = nlohmann::json::array();
  for (const ModelRow& row : rows) {
    const double roofline = bandwidth * 1e3 / row.bytes_per_token_mb;
    result.push_back({{"model", row.dir},
                      {"weights_dtype", row.weights_dtype},
                      {"file_mb", row.file_mb},
                      {"resident_mb", row.resident_mb},
                      {"weight_mb_per_token", row.bytes_per_token_mb},
                      {"prefill_tok_s", row.prefill_tok_s},
                      {"decode_tok_s", row.decode_tok_s},
                      {"decode_vs_first", row.decode_tok_s / rows[0].decode_tok_s},
                      {"decode_roofline_pct", 100.0 * row.decode_tok_s / roofline}});
  }
  if (json_output) {
    std::printf("%s\n", nlohmann::json{{"threads", ThreadPool::global().num_threads()},
                                       {"kernels", std::string(kernels::isa_name(kernels::active_isa()))},
                                       {"bandwidth_gb_s", bandwidth},
                                       {"prompt_tokens", prompt_tokens},
                                       {"gen_tokens", gen_tokens},
                                       {"models", result}}
                                .dump()
                                .c_str());
    return 0;
  }
  std::printf("%d threads, %s kernels, read bandwidth %.1f GB/s, prompt %lld, gen %lld\n",
              ThreadPool::global().num_threads(), std::string(kernels::isa_name(kernels::active_isa())).c_str(),
              bandwidth, (long long)prompt_tokens, (long long)gen_tokens);
  std::printf("%-36s %-8s %9s %9s %9s %11s %10s %8s %9s\n", "model", "weights", "file MB", "RSS MB",
              "MB/token", "prefill t/s", "decode t/s", "vs first", "roofline");
  for (const auto& row : result) {
    std::printf("%-36s %-8s %9.0f %9.0f %9.0f %11.1f %10.1f %7.2fx %8.1f%%\n",
                row["model"].get<std::string>().c_str(), row["weights_dtype"].get<std::string>().c_str(),
                row["file_mb"].get<double>(), row["resident_mb"].get<double>(),
                row["weight_mb_per_token"].get<double>(), row["prefill_tok_s"].get<double>(),
                row["decode_tok_s"].get<double>(), row["decode_vs_first"].get<double>(),
                row["decode_roofline_pct"].get<double>());
  }
  return 0;
}

}  // namespace dsv3::cli
