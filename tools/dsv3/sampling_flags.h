// Flags shared by generate, chat and serve: the model directory, context and sampling.
#pragma once

#include <set>
#include <string>

#include "args.h"
#include "generate/generator.h"

namespace dsv3::cli {

// Flags taking a value that set_generation_flags reads.
inline const std::set<std::string> kGenerationFlags = {
    "--model", "-n", "--max-new-tokens", "--temp", "--top-p", "--top-k", "--min-p",
    "--repeat-penalty", "--seed", "--ctx", "--stop", "--threads", "--activations",
    "--attention-precision"};
inline const std::map<std::string, std::string> kGenerationAliases = {{"-m", "--model"},
                                                                       {"-n", "--max-new-tokens"}};

// Starts from the model's generation_config.json and applies the flags on top.
// --temp 0 means greedy; any --temp > 0 switches sampling on.
GenerationConfig generation_config_from_flags(const Args& args, const std::string& model_dir,
                                              const Config& config);

// The cache size: --ctx, else max_position_embeddings (at most 32768 unless asked).
int64_t context_from_flags(const Args& args, const Config& config);

// Applies --threads (0 or absent: all cores).
void apply_thread_flag(const Args& args);

// Applies --activations f32|bf16|auto (the precision of the activations in products with BF16
// weights, kernels/activation_precision.h); absent: DSV3_ACTIVATIONS, else auto. And
// --attention-precision f32|bf16 (model/attention.h); absent: DSV3_ATTENTION_PRECISION, else f32.
void apply_activation_flag(const Args& args);
// The usage line of that flag.
inline constexpr const char* kActivationFlagUsage = "[--activations f32|bf16|auto]";

// Applies --no-mmap (weights copied onto 2 MB pages: faster decode, seconds of loading, a
// private copy) or --mmap (weights used in place from the page cache); neither: DSV3_NO_MMAP,
// else a copy when the weights take at most half of the available memory (io/file_memory.h).
void apply_weight_memory_flag(const Args& args);
inline constexpr const char* kWeightMemoryFlagUsage = "[--mmap | --no-mmap]";

}  // namespace dsv3::cli
