// dsv3 bench -m DIR [--prompt N] [--gen N] [--ctx-depth D] [--threads T] [--activations P]
//            [--repeat R] [--profile] [--json]
// Prefill and decode speed on a checkpoint, next to this machine's limits: its measured read
// bandwidth gives the decode roofline (weight bytes read per token / bandwidth) and its
// measured arithmetic peak the prefill one. The bandwidth is probed again just before and just
// after every decode run, and that run is compared with the mean of its two probes: on a shared
// host the bandwidth changes from second to second (40 to 85 GB/s within a minute here), and a
// roofline probed at another moment says little of the run. The bandwidth is also sampled
// between the run's tokens (decode_sampled), and the run compared with those samples too. With
// --repeat, prefill and decode run R times and the medians are reported (with the range);
// --profile adds the wall time per phase of the forward pass (util/phase_profile.h) for the
// last run, the decode at --ctx-depth included.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "args.h"
#include "bench_decode.h"
#include "bench_formats.h"
#include "commands.h"
#include "generate/sampler.h"
#include "kernels/activation_precision.h"
#include "kernels/cpu_dispatch.h"
#include "kernels/machine_probe.h"
#include "median.h"
#include "model/attention.h"
#include "model/footprint.h"
#include "model/model.h"
#include "sampling_flags.h"
#include "spread_token_ids.h"
#include "tensor/thread_pool.h"
#include "util/error.h"
#include "util/phase_profile.h"

namespace dsv3::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU seconds of the whole process (all threads, user + system).
double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;
}

// Feeds `ids` in pieces of at most `chunk` tokens; returns the last logits.
std::vector<float> prefill(const CausalLM& model, std::span<const int32_t> ids, LatentCache& cache,
                           int64_t chunk) {
  std::vector<float> logits;
  for (size_t start = 0; start < ids.size(); start += size_t(chunk))
    logits =
        model.forward(ids.subspan(start, std::min(size_t(chunk), ids.size() - start)), cache, 1);
  return logits;
}

// The phase totals recorded since the last reset, one line each, `divisor` runs averaged.
void print_phases(const char* title, double divisor) {
  const std::vector<profile::PhaseTotal> totals = profile::totals();
  double sum = 0;
  for (const profile::PhaseTotal& total : totals) sum += total.seconds;
  std::printf("%s (%.2f ms in phases)\n", title, 1e3 * sum / divisor);
  for (const profile::PhaseTotal& total : totals)
    std::printf("  %-22s %9.2f ms %5.1f%%\n", total.name.c_str(), 1e3 * total.seconds / divisor,
                100.0 * total.seconds / sum);
}

}  // namespace

int run_bench(const CommandArgs& argv) {
  Args args(
      argv,
      {"--model", "--prompt", "--gen", "--ctx-depth", "--threads", "--activations", "--attention-precision", "--repeat"},
      {"--json", "--profile", "--help", "--mmap", "--no-mmap"}, {{"-m", "--model"}});
  if (args.has("--help")) {
    std::fprintf(stderr,
                 "usage: dsv3 bench -m DIR [-m DIR2 ...] [--prompt N] [--gen N] [--ctx-depth D]\n"
                 "       [--threads T] [--activations f32|bf16|auto] [--attention-precision f32|bf16] [--repeat R] [--profile]\n"
                 "       [--mmap | --no-mmap] [--json]\n");
    return 0;
  }
  // Several models (e.g. one per weight format): one row each, see cmd_bench_formats.cpp.
  if (args.get_all("--model").size() > 1) return run_bench_models(args);
  const std::string dir = args.require("--model");
  const int64_t prompt_tokens = args.get_int("--prompt", 512);
  const int64_t gen_tokens = args.get_int("--gen", 32);
  const int64_t depth = args.get_int("--ctx-depth", 0);
  const int64_t repeats = args.get_int("--repeat", 1);
  const bool profiling = args.has("--profile");
  if (prompt_tokens < 1 || gen_tokens < 1 || depth < 0 || repeats < 1 || repeats > 1000)
    throw Error("--prompt, --gen and --repeat (up to 1000) must be >= 1, --ctx-depth >= 0");
  apply_thread_flag(args);
  apply_activation_flag(args);
  apply_weight_memory_flag(args);
  const bool json_output = args.has("--json");
  auto note = [&](const char* text) {
    if (!json_output) std::fprintf(stderr, "%s\n", text);
  };

  // The bandwidth probe's buffer first: it stays resident through the runs, and peak_rss_mb()
  // minus its size is then the model's peak.
  note("measuring memory bandwidth and arithmetic peak ...");
  const kernels::ReadBandwidthProbe bandwidth_probe;
  const double first_bandwidth = bandwidth_probe.measure();
  const double probe_mb = double(bandwidth_probe.bytes()) / double(1 << 20);

  auto load_start = Clock::now();
  CausalLM model = CausalLM::from_pretrained(dir);
  const double load_seconds = seconds_since(load_start);
  const Config& config = model.config();
  const Footprint footprint = model_footprint(config, model.model().weights());

  const double peak_f32 = kernels::measure_peak_gflops_f32();
  const double peak_bf16 = kernels::measure_peak_gflops_bf16();

  const int64_t capacity = std::max(prompt_tokens, depth) + gen_tokens + 1;
  LatentCache cache = model.new_cache(capacity);
  const std::vector<int32_t> prompt = spread_token_ids(prompt_tokens, config.vocab_size, 12345);

  note("warming up (touching every weight once) ...");
  prefill(model, prompt, cache, prompt_tokens);
  cache.clear();

  // --ctx-depth D: D tokens prefilled once into their own cache; every run decodes from there
  // (the cache cut back to D first), right after its decode from depth 0, so that each run's
  // ratio of the two is measured in one state of the host.
  LatentCache depth_cache = model.new_cache(depth > 0 ? depth + gen_tokens + 1 : 1);
  int32_t depth_first = 0;
  if (depth > 0) {
    note("prefilling the context depth ...");
    const std::vector<int32_t> long_prompt = spread_token_ids(depth, config.vocab_size, 12345);
    depth_first = argmax(prefill(model, long_prompt, depth_cache, 512));
  }

  note("prefill and decode ...");
  // Each run: prefill the prompt into an empty cache, then decode gen_tokens greedily from an
  // empty cache again (depth 0, as llama-bench's tg): the decode figure is the weights' stream
  // that the roofline models, and --ctx-depth D measures how attention over D cached tokens
  // slows it.
  std::vector<double> prefill_runs, decode_runs, depth_decode_runs, cpu_share_runs;
  std::vector<double> bandwidth_runs;  // GB/s probed around each decode run
  std::vector<double> sampled_bandwidth_runs;  // GB/s sampled between its tokens
  for (int64_t run = 0; run < repeats; ++run) {
    const bool profile_this_run = profiling && run + 1 == repeats;
    cache.clear();
    profile::set_enabled(profile_this_run);
    profile::reset();
    auto start = Clock::now();
    const double cpu_start = cpu_seconds();
    std::vector<float> logits = prefill(model, prompt, cache, prompt_tokens);
    const int32_t first = argmax(logits);
    const double seconds = seconds_since(start);
    prefill_runs.push_back(seconds);
    // On a shared host other processes take CPU time from ours: the share of the threads' wall
    // time they ran (spinning included) tells whether a figure was measured on free cores.
    cpu_share_runs.push_back((cpu_seconds() - cpu_start) /
                             (seconds * ThreadPool::global().num_threads()));
    if (profile_this_run && !json_output) print_phases("prefill phases", 1.0);
    profile::reset();
    cache.clear();
    bandwidth_runs.push_back(bandwidth_probe.measure_around([&] {
      const SampledDecode run = decode_sampled(model, first, cache, gen_tokens, bandwidth_probe);
      decode_runs.push_back(run.seconds);
      sampled_bandwidth_runs.push_back(run.bandwidth_gb_s);
    }));
    if (profile_this_run && !json_output)
      print_phases("decode phases per token", double(gen_tokens));
    profile::set_enabled(false);
    if (depth > 0) {
      depth_cache.truncate(depth);
      profile::set_enabled(profile_this_run);
      profile::reset();
      depth_decode_runs.push_back(decode(model, depth_first, depth_cache, gen_tokens));
      if (profile_this_run && !json_output)
        print_phases(("decode phases per token at depth " + std::to_string(depth)).c_str(),
                     double(gen_tokens));
      profile::set_enabled(false);
    }
  }
  const double prefill_seconds = median(prefill_runs);
  const double decode_seconds = median(decode_runs);
  const double prefill_cpu_share = median(cpu_share_runs);

  const double depth_decode_tok_s = depth > 0 ? double(gen_tokens) / median(depth_decode_runs) : 0;

  const double prefill_tok_s = double(prompt_tokens) / prefill_seconds;
  const double decode_tok_s = double(gen_tokens) / decode_seconds;
  // Tokens per second of every run (reported too, so the spread behind the medians is visible).
  auto rates = [](std::vector<double> seconds, int64_t tokens) {
    for (double& value : seconds) value = double(tokens) / value;
    return seconds;
  };
  const std::vector<double> decode_rates = rates(decode_runs, gen_tokens);
  // Each decode run against the roofline of its own probes (and of the bandwidth sampled
  // between its tokens); the median of those shares is the figure. The best probe of the whole
  // bench gives the stricter one beside it.
  const double weight_bytes_per_token = double(footprint.decode_bytes_per_token);
  const std::vector<double> roofline_pct_runs =
      roofline_shares(decode_rates, weight_bytes_per_token, bandwidth_runs);
  const std::vector<double> sampled_pct_runs =
      roofline_shares(decode_rates, weight_bytes_per_token, sampled_bandwidth_runs);
  const double sampled_bandwidth = median(sampled_bandwidth_runs);
  const double decode_sampled_pct = median(sampled_pct_runs);
  const double bandwidth = median(bandwidth_runs);
  const double best_bandwidth =
      std::max(first_bandwidth, *std::max_element(bandwidth_runs.begin(), bandwidth_runs.end()));
  const double roofline = bandwidth * 1e9 / weight_bytes_per_token;
  const double decode_roofline_pct = median(roofline_pct_runs);
  const double best_roofline = best_bandwidth * 1e9 / weight_bytes_per_token;
  // The prompt's arithmetic: its matrix products and its causal attention products (scores
  // and weighted sums: 8 of the bench shape's 150 GFLOP in a 512-token prompt). These are the
  // model's flops, as llama.cpp's and the figures count them; the prefill leaves out
  // the last layer's for all but the last token (Model::forward_batch), and the flops it
  // executes are reported beside them.
  const int64_t attention_flops = prefill_attention_flops(config, prompt_tokens);
  const double prefill_flops =
      double(footprint.flops_per_token) * double(prompt_tokens) + double(attention_flops);
  const double prefill_gflops = prefill_flops / prefill_seconds / 1e9;
  const double prefill_executed_flops =
      prefill_flops -
      double(prefill_skipped_flops(config, model.model().weights(), prompt_tokens));
  const double prefill_executed_gflops = prefill_executed_flops / prefill_seconds / 1e9;
  // The activation precision of the BF16-weight products that ran, and the peak to compare
  // with: the vdpbf16ps peak only when those products used vdpbf16ps.
  const WeightMatrix& sample_weight = model.model().weights().layers[0].self_attn.kv_b_proj;
  const bool bf16_activations = kernels::rounds_activations_to_bf16(sample_weight);
  const bool dpbf16 =
      bf16_activations && peak_bf16 > 0 && kernels::active_isa() == kernels::KernelIsa::kAvx512;
  // With DSV3_AMX=1 the BF16 products run on AMX tiles; the peak compared with stays the
  // vdpbf16ps one (the bench does not probe AMX).
  const std::string bf16_kernel = kernels::amx_bf16_active() ? "bf16 (AMX)" : "bf16 (vdpbf16ps)";
  const std::string activations = bf16_activations ? (dpbf16 ? bf16_kernel : "bf16") : "f32";
  const double peak = dpbf16 ? peak_bf16 : peak_f32;
  // The expanded attention's precision (model/attention.h): bf16 only where the activations are.
  const std::string attention =
      bf16_activations && attention_precision() == AttentionPrecision::kBf16 ? "bf16" : "f32";

  nlohmann::json result = {
      {"model", dir},
      {"threads", ThreadPool::global().num_threads()},
      {"kernels", std::string(kernels::isa_name(kernels::active_isa()))},
      {"activations", activations},
      {"attention_precision", attention},
      {"weights_dtype",
       std::string(dtype_name(model.model().weights().layers[0].self_attn.kv_b_proj.dtype))},
      {"weight_bytes", footprint.weight_bytes},
      {"load_s", load_seconds},
      {"prompt_tokens", prompt_tokens},
      {"gen_tokens", gen_tokens},
      {"prefill_tok_s", prefill_tok_s},
      {"ttft_ms", prefill_seconds * 1e3},
      {"decode_tok_s", decode_tok_s},
      {"ctx_depth", depth},
      {"decode_tok_s_at_depth", depth_decode_tok_s},
      {"peak_rss_mb", peak_rss_mb() - probe_mb},
      {"cache_bytes_per_token", cache.bytes_per_token()},
      {"cache_bytes_per_token_expanded",
       cache.expanded_bytes_per_token_per_layer(config) * config.num_hidden_layers},
      {"bandwidth_gb_s", bandwidth},
      {"bandwidth_gb_s_runs", bandwidth_runs},
      {"bandwidth_gb_s_best", best_bandwidth},
      {"weight_bytes_per_token", footprint.decode_bytes_per_token},
      {"roofline_decode_tok_s", roofline},
      {"decode_roofline_pct", decode_roofline_pct},
      {"decode_roofline_pct_runs", roofline_pct_runs},
      {"decode_roofline_pct_of_best", 100.0 * decode_tok_s / best_roofline},
      {"bandwidth_gb_s_between_tokens", sampled_bandwidth},
      {"bandwidth_gb_s_between_tokens_runs", sampled_bandwidth_runs},
      {"decode_roofline_pct_between_tokens", decode_sampled_pct},
      {"decode_roofline_pct_between_tokens_runs", sampled_pct_runs},
      {"peak_gflops", peak},
      {"peak_gflops_f32", peak_f32},
      {"peak_gflops_bf16", peak_bf16},
      {"prefill_gflops", prefill_gflops},
      {"prefill_peak_pct", 100.0 * prefill_gflops / peak},
      {"prefill_cpu_share", prefill_cpu_share},
      {"flops_per_prompt_token", footprint.flops_per_token},
      {"prefill_attention_flops", attention_flops},
      {"prefill_flops", prefill_flops},
      {"prefill_executed_flops", prefill_executed_flops},
      {"prefill_executed_gflops", prefill_executed_gflops},
      {"prefill_executed_peak_pct", 100.0 * prefill_executed_gflops / peak},
      {"repeat", repeats},
  };
  const std::vector<double> prefill_rates = rates(prefill_runs, prompt_tokens);
  result["prefill_tok_s_runs"] = prefill_rates;
  result["decode_tok_s_runs"] = decode_rates;
  const std::vector<double> depth_decode_rates = rates(depth_decode_runs, gen_tokens);
  if (depth > 0) result["decode_tok_s_at_depth_runs"] = depth_decode_rates;
  if (json_output) {
    std::printf("%s\n", result.dump().c_str());
    return 0;
  }
  std::printf(
      "model            %s (%s weights, %.0f MB, %d threads, %s kernels, %s activations, %s "
      "attention)\n",
      dir.c_str(), result["weights_dtype"].get<std::string>().c_str(),
      footprint.weight_bytes / 1e6, ThreadPool::global().num_threads(),
      result["kernels"].get<std::string>().c_str(), activations.c_str(), attention.c_str());
  std::printf(
      "machine          read bandwidth %.1f GB/s (median of the probes beside the decode runs; "
      "best %.1f), peak %.0f GFLOP/s f32, %.0f GFLOP/s bf16\n",
      bandwidth, best_bandwidth, peak_f32, peak_bf16);
  std::printf(
      "prefill          %lld tokens: %.1f tok/s, %.1f GFLOP/s of the model's flops (%.1f%% of the "
      "%s peak %.0f), ttft %.0f ms\n"
      "                 (executed: %.1f GFLOP/s, %.1f%% of the peak; the last layer runs only the "
      "last token past its cache write)\n",
      (long long)prompt_tokens, prefill_tok_s, prefill_gflops, 100.0 * prefill_gflops / peak,
      dpbf16 ? "bf16" : "f32", peak, prefill_seconds * 1e3, prefill_executed_gflops,
      100.0 * prefill_executed_gflops / peak);
  auto print_range = [&](const std::vector<double>& values) {
    if (values.size() < 2) return;
    std::printf("                 (median of %zu runs: %.1f to %.1f tok/s)\n", values.size(),
                *std::min_element(values.begin(), values.end()),
                *std::max_element(values.begin(), values.end()));
  };
  print_range(prefill_rates);
  if (prefill_cpu_share < 0.9)
    std::printf(
        "                 (the threads ran only %.0f%% of the prefill's wall time: a busy host)\n",
        100.0 * prefill_cpu_share);
  std::printf(
      "decode           %lld tokens from depth 0: %.1f tok/s = %.1f%% of the roofline %.1f tok/s "
      "(%.0f MB read per token)\n",
      (long long)gen_tokens, decode_tok_s, decode_roofline_pct, roofline,
      weight_bytes_per_token / 1e6);
  print_range(decode_rates);
  std::printf("                 (run by run, %% of the roofline probed beside it:");
  for (size_t i = 0; i < roofline_pct_runs.size(); ++i)
    std::printf(" %.1f (%.0f GB/s)", roofline_pct_runs[i], bandwidth_runs[i]);
  std::printf(";\n                 %.1f%% of the best probe's roofline %.1f tok/s;\n",
              100.0 * decode_tok_s / best_roofline, best_roofline);
  std::printf("                 %.1f%% of the roofline sampled between its tokens, at %.1f GB/s:",
              decode_sampled_pct, sampled_bandwidth);
  for (size_t i = 0; i < sampled_pct_runs.size(); ++i)
    std::printf(" %.1f (%.0f GB/s)", sampled_pct_runs[i], sampled_bandwidth_runs[i]);
  std::printf(")\n");
  if (depth > 0) {
    std::printf("decode at %-6lld %.1f tok/s (%.1f%% of decode at depth 0)\n", (long long)depth,
                depth_decode_tok_s, 100.0 * depth_decode_tok_s / decode_tok_s);
    print_range(depth_decode_rates);
    if (repeats > 1) {
      std::printf("                 (run by run, %% of that run's depth 0:");
      for (size_t i = 0; i < depth_decode_rates.size(); ++i)
        std::printf(" %.1f", 100.0 * depth_decode_rates[i] / decode_rates[i]);
      std::printf(")\n");
    }
  }
  std::printf("cache            %lld B per token (%lld B with per-head keys and values)\n",
              (long long)cache.bytes_per_token(),
              (long long)(cache.expanded_bytes_per_token_per_layer(config) *
                          config.num_hidden_layers));
  std::printf("memory           peak RSS %.0f MB (without the bandwidth probe's %.0f MB)\n",
              peak_rss_mb() - probe_mb, probe_mb);
  return 0;
}

}  // namespace dsv3::cli
