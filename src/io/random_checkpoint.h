// Random checkpoints in the exact Hugging Face DeepSeek-V3 layout, for tests and benchmarks
// (`dsv3 make-tiny`). Weights are scaled so bugs show: linear weights with std 1/sqrt(fan_in),
// unit-variance embeddings, random norm weights and router biases.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace dsv3 {

// Known presets: tiny, tiny-yarn, tiny-noqlora, tiny-smallvocab, bench.
Config preset_config(const std::string& name);
std::vector<std::string> preset_names();

struct RandomCheckpointOptions {
  uint64_t seed = 0;
  std::string dtype = "bf16";  // f32, bf16 or fp8 (the official e4m3 128x128 block layout)
  int64_t shards = 1;          // > 1: model-0000i-of-0000K.safetensors + index
  std::string tokenizer_dir;   // copies tokenizer.json + tokenizer_config.json from here ("" = none)
  bool sequence_classification = false;  // score head instead of lm_head
};

// Writes config.json, generation_config.json, the safetensors and the tokenizer files.
void write_random_checkpoint(const std::string& out_dir, Config config,
                             const RandomCheckpointOptions& options);

}  // namespace dsv3
