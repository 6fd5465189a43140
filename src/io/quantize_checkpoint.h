// `dsv3 quantize`: a checkpoint directory (F32, F16, BF16 or FP8 e4m3 block-scaled) rewritten
// with every linear weight in Q8 or Q4 (tensor/block_quant.h). Embeddings (model.embed_tokens,
// and an MTP layer's embed_tokens), norms, the MoE router (mlp.gate.weight and its
// e_score_correction_bias), biases and a classification head (score.weight) keep their
// original values: copied as they are, or, if stored as FP8, dequantized to BF16. Everything
// else in the directory (tokenizer files, generation_config.json, ...) is copied; config.json
// gets the quantization_config describing the format.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace dsv3 {

struct QuantizeSummary {
  int64_t quantized_tensors = 0;
  int64_t kept_tensors = 0;
  int64_t input_bytes = 0;   // tensor data read
  int64_t output_bytes = 0;  // tensor data written
  int64_t shards = 0;
};

// Whether `dsv3 quantize` converts tensor `name` of this shape (a 2-D linear weight).
bool is_quantized_linear(const std::string& name, int64_t dims);

struct QuantizeOptions {
  DType format = DType::Q4;  // DType::Q8 or DType::Q4
  // Tensors whose name contains one of these stay as they are too (FP8 ones become BF16), like
  // llama.cpp's per-tensor overrides.
  std::vector<std::string> keep;
  // Q4 only: false writes Q4's mixture, the FFNs that every token reads (the shared experts and
  // the dense layers' MLPs, about a tenth of DeepSeek-V3's active weights) in Q8, as llama.cpp's
  // Q4_K_M keeps some tensors at higher precision; true quantizes every linear weight to Q4
  // (llama.cpp's --pure).
  bool pure = false;
};

// Writes the quantized checkpoint to out_dir (created; tensor files of at most ~2 GB each, with
// model.safetensors.index.json when more than one). Throws dsv3::Error on unreadable input, an
// already block-quantized input or an unwritable out_dir.
QuantizeSummary quantize_checkpoint(const std::string& in_dir, const std::string& out_dir,
                                    const QuantizeOptions& options);

}  // namespace dsv3
