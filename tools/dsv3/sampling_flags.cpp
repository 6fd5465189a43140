#include "sampling_flags.h"

#include <algorithm>

#include "io/file_memory.h"
#include "kernels/activation_precision.h"
#include "model/attention.h"
#include "tensor/thread_pool.h"
#include "util/error.h"

namespace dsv3::cli {

GenerationConfig generation_config_from_flags(const Args& args, const std::string& model_dir,
                                              const Config& config) {
  GenerationConfig generation = GenerationConfig::from_model_dir(model_dir, config);
  SamplingParams& sampling = generation.sampling;
  if (args.has("--temp")) {
    sampling.temperature = float(args.get_double("--temp", 1.0));
    sampling.do_sample = sampling.temperature > 0.0f;
  }
  sampling.top_p = float(args.get_double("--top-p", sampling.top_p));
  sampling.top_k = args.get_int("--top-k", sampling.top_k);
  sampling.min_p = float(args.get_double("--min-p", sampling.min_p));
  sampling.repetition_penalty = float(args.get_double("--repeat-penalty", sampling.repetition_penalty));
  sampling.seed = uint64_t(args.get_int("--seed", 0));
  sampling.validate();
  generation.max_new_tokens = args.get_int("--max-new-tokens", 256);
  if (generation.max_new_tokens < 0) throw Error("-n must not be negative");
  if (args.has("--stop")) generation.stop_strings.push_back(args.get("--stop"));
  return generation;
}

int64_t context_from_flags(const Args& args, const Config& config) {
  const int64_t context = args.get_int("--ctx", std::min<int64_t>(config.max_position_embeddings, 32768));
  if (context <= 0) throw Error("--ctx must be positive");
  return context;
}

void apply_thread_flag(const Args& args) {
  const int64_t threads = args.get_int("--threads", 0);
  if (threads < 0) throw Error("--threads must not be negative");
  ThreadPool::global().set_num_threads(int(threads));
}

void apply_weight_memory_flag(const Args& args) {
  if (args.has("--mmap") && args.has("--no-mmap")) throw Error("--mmap and --no-mmap exclude each other");
  if (args.has("--mmap")) set_file_memory(FileMemory::kMapped);
  if (args.has("--no-mmap")) set_file_memory(FileMemory::kHugePageCopy);
}

void apply_activation_flag(const Args& args) {
  if (args.has("--attention-precision"))
    set_attention_precision(
        parse_attention_precision(args.get("--attention-precision"), "--attention-precision"));
  if (!args.has("--activations")) return;
  kernels::set_activation_precision(
      kernels::parse_activation_precision(args.get("--activations"), "--activations"));
}

}  // namespace dsv3::cli
