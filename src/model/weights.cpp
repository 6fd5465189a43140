#include "model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/matmul.h"
#include "tensor/block_quant.h"
#include "tensor/row_blocks.h"
#include "util/error.h"

namespace dsv3 {

namespace {

bool is_float_dtype(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

float element_as_float(const TensorEntry& tensor, int64_t index) {
  const std::byte* at = tensor.data + index * int64_t(dtype_size(tensor.dtype));
  switch (tensor.dtype) {
    case DType::F32: {
      float value;
      std::memcpy(&value, at, 4);
      return value;
    }
    case DType::BF16: {
      uint16_t bits;
      std::memcpy(&bits, at, 2);
      return bf16_to_f32(bits);
    }
    case DType::F16: {
      uint16_t bits;
      std::memcpy(&bits, at, 2);
      return f16_to_f32(bits);
    }
    default:
      return 0.0f;
  }
}

class WeightLoader {
 public:
  WeightLoader(const Checkpoint& checkpoint, const Config& config, ModelWeights& weights)
      : checkpoint_(checkpoint), config_(config), weights_(weights) {}

  // A vector of any float dtype, converted to float32.
  std::vector<float> vector(const std::string& name, int64_t size) {
    const TensorEntry& tensor = checkpoint_.require(name, {size});
    if (!is_float_dtype(tensor.dtype))
      throw Error(checkpoint_.dir() + ": tensor " + name + " has dtype " +
                  std::string(dtype_name(tensor.dtype)) + ", expected F32, F16 or BF16");
    std::vector<float> values(size);
    for (int64_t i = 0; i < size; ++i) values[i] = element_as_float(tensor, i);
    return values;
  }

  RmsNormWeights norm(const std::string& name, int64_t size, double eps) {
    return RmsNormWeights{vector(name, size), float(eps)};
  }

  // A [rows][cols] matrix used in place. F8_E4M3 needs its `_scale_inv` block scales.
  // kRegroup: a BF16 matrix in a private copy of the file is regrouped into kRowBlocks in place
  // when the products would gain (kernels::row_blocks_pay); the embedding (rows looked up) and
  // the classification head (a few rows) stay row-major.
  enum Regroup { kKeepRows, kRegroup };
  WeightMatrix matrix(const std::string& name, int64_t rows, int64_t cols,
                      Regroup regroup = kRegroup) {
    if (const TensorEntry* found = checkpoint_.find(name);
        found && (found->dtype == DType::I8 || found->dtype == DType::U8))
      return quantized_matrix(name, *found, rows, cols);
    const TensorEntry& tensor = checkpoint_.require(name, {rows, cols});
    WeightMatrix matrix;
    matrix.dtype = tensor.dtype;
    matrix.rows = rows;
    matrix.cols = cols;
    if (!is_float_dtype(tensor.dtype) && tensor.dtype != DType::F8_E4M3)
      throw Error(checkpoint_.dir() + ": tensor " + name + " has dtype " +
                  std::string(dtype_name(tensor.dtype)) + ", expected F32, F16, BF16 or F8_E4M3");
    matrix.data = aligned(tensor);
    if (tensor.layout == WeightLayout::kRowBlocks) {
      matrix.layout = WeightLayout::kRowBlocks;  // regrouped by an earlier load
    } else if (regroup == kRegroup && tensor.private_copy != nullptr &&
               matrix.data == tensor.data && fits_row_blocks(matrix) &&
               kernels::row_blocks_pay()) {
      regroup_into_row_blocks(matrix, tensor.private_copy);
      tensor.layout = WeightLayout::kRowBlocks;
    }
    if (tensor.dtype == DType::F8_E4M3) {
      const auto& quant = config_.quantization_config;
      const int64_t block_rows = quant.block_rows, block_cols = quant.block_cols;
      const int64_t scale_rows = (rows + block_rows - 1) / block_rows;
      const int64_t scale_cols = (cols + block_cols - 1) / block_cols;
      std::string scale_name = name + "_scale_inv";
      const TensorEntry& scale = checkpoint_.require(scale_name, {scale_rows, scale_cols});
      if (!is_float_dtype(scale.dtype))
        throw Error(checkpoint_.dir() + ": tensor " + scale_name + " has dtype " +
                    std::string(dtype_name(scale.dtype)) + ", expected F32, F16 or BF16");
      auto& scales = weights_.owned_floats.emplace_back(scale.numel());
      for (int64_t i = 0; i < scale.numel(); ++i) scales[i] = element_as_float(scale, i);
      matrix.block_scale = scales.data();
      matrix.block_rows = block_rows;
      matrix.block_cols = block_cols;
      matrix.scale_cols = scale_cols;
    }
    return matrix;
  }

  // A Q8 / Q4 matrix of `dsv3 quantize` (tensor/block_quant.h): I8 or U8 codes and the
  // "<name>_scale" F16 [rows, ceil(cols / 32)] group scales, both used in place.
  WeightMatrix quantized_matrix(const std::string& name, const TensorEntry& tensor, int64_t rows,
                                int64_t cols) {
    const auto& quant = config_.quantization_config;
    if (!config_.is_block_quantized())
      throw Error(checkpoint_.dir() + ": tensor " + name + " has dtype " +
                  std::string(dtype_name(tensor.dtype)) +
                  " but config.json has no quantization_config with quant_method \"dsv3\"");
    const bool q8_module =
        std::any_of(quant.q8_modules.begin(), quant.q8_modules.end(),
                    [&](const std::string& part) { return name.find(part) != std::string::npos; });
    const DType format = quant.fmt == "q8" || q8_module ? DType::Q8 : DType::Q4;
    const DType stored = format == DType::Q8 ? DType::I8 : DType::U8;
    if (tensor.dtype != stored)
      throw Error(checkpoint_.dir() + ": tensor " + name + " has dtype " +
                  std::string(dtype_name(tensor.dtype)) + ", expected " +
                  std::string(dtype_name(stored)) + " for quantization fmt " + quant.fmt +
                  (q8_module ? " (a q8_modules tensor)" : ""));
    checkpoint_.require(name, {rows, quant_row_bytes(format, cols)});
    const std::string scale_name = name + "_scale";
    const int64_t groups = quant_groups(cols);
    const TensorEntry& scale = checkpoint_.require(scale_name, {rows, groups});
    if (scale.dtype != DType::F16)
      throw Error(checkpoint_.dir() + ": tensor " + scale_name + " has dtype " +
                  std::string(dtype_name(scale.dtype)) + ", expected F16");
    const auto* scales = static_cast<const uint16_t*>(aligned(scale));
    for (int64_t i = 0; i < rows * groups; ++i) {
      if (!std::isfinite(f16_to_f32(scales[i])))
        throw Error(checkpoint_.dir() + ": tensor " + scale_name + " has a non-finite scale at " +
                    std::to_string(i));
    }
    WeightMatrix matrix;
    matrix.dtype = format;
    matrix.data = aligned(tensor);
    matrix.rows = rows;
    matrix.cols = cols;
    matrix.group_scale = scales;
    matrix.scale_cols = groups;
    return matrix;
  }

  Linear linear(const std::string& prefix, int64_t rows, int64_t cols, bool has_bias) {
    Linear linear;
    linear.weight = matrix(prefix + ".weight", rows, cols);
    if (has_bias) linear.bias = vector(prefix + ".bias", rows);
    return linear;
  }

  MlpWeights mlp(const std::string& prefix, int64_t intermediate) {
    const int64_t hidden = config_.hidden_size;
    MlpWeights mlp;
    mlp.gate_proj = matrix(prefix + ".gate_proj.weight", intermediate, hidden);
    mlp.up_proj = matrix(prefix + ".up_proj.weight", intermediate, hidden);
    mlp.down_proj = matrix(prefix + ".down_proj.weight", hidden, intermediate);
    mlp.gate_up = stacked_rows(mlp.gate_proj, mlp.up_proj);
    return mlp;
  }

  AttentionWeights attention(const std::string& prefix) {
    const Config& c = config_;
    const int64_t heads = c.num_attention_heads;
    AttentionWeights attn;
    if (c.q_lora_rank) {
      attn.q_a_proj = linear(prefix + ".q_a_proj", *c.q_lora_rank, c.hidden_size, c.attention_bias);
      attn.q_a_layernorm = norm(prefix + ".q_a_layernorm.weight", *c.q_lora_rank, 1e-6);
      attn.q_b_proj = matrix(prefix + ".q_b_proj.weight", heads * c.qk_head_dim(), *c.q_lora_rank);
    } else {
      attn.q_proj = linear(prefix + ".q_proj", heads * c.qk_head_dim(), c.hidden_size, false);
    }
    attn.kv_a_proj_with_mqa = linear(prefix + ".kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim,
                                     c.hidden_size, c.attention_bias);
    // transformers builds q_a_layernorm and kv_a_layernorm with the default eps 1e-6.
    attn.kv_a_layernorm = norm(prefix + ".kv_a_layernorm.weight", c.kv_lora_rank, 1e-6);
    attn.kv_b_proj = matrix(prefix + ".kv_b_proj.weight",
                            heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank);
    attn.o_proj = linear(prefix + ".o_proj", c.hidden_size, heads * c.v_head_dim, c.attention_bias);
    absorb(attn);
    return attn;
  }

  // Splits kv_b_proj per head into W_UK^T and W_UV (DeepSeek-V2 paper, section 2.1.2). A BF16
  // kv_b_proj gives both packed for kernels::head_matvec, every head's back to back, W_UK^T and
  // W_UV apart: a decode step's thread reads its heads' matrices of each as one stream. Other
  // formats give WeightMatrix views or copies (key_absorb, value_up).
  void absorb(AttentionWeights& attn) {
    const Config& c = config_;
    const int64_t rank = c.kv_lora_rank, nope = c.qk_nope_head_dim, v = c.v_head_dim;
    const int64_t heads = c.num_attention_heads;
    const WeightMatrix& kv_b = attn.kv_b_proj;
    if (kv_b.dtype == DType::BF16) return pack_heads(attn);
    attn.key_absorb_in_place = is_block_quantized(kv_b.dtype);
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t head_row = h * (nope + v);
      attn.value_up.push_back(row_view(kv_b, head_row + nope, v));
      if (attn.key_absorb_in_place) {
        attn.key_absorb.push_back(row_view(kv_b, head_row, nope));
        continue;
      }
      // W_UK^T: a transposed float copy.
      WeightMatrix key{DType::F32, nullptr, rank, nope};
      auto& storage = weights_.owned_floats.emplace_back(size_t(rank * nope));
      for (int64_t j = 0; j < nope; ++j)
        for (int64_t r = 0; r < rank; ++r) storage[r * nope + j] = kv_b.at(head_row + j, r);
      key.data = storage.data();
      attn.key_absorb.push_back(key);
    }
  }

  // W_UK^T ([rank][nope], the transpose of the head's first nope rows) and W_UV ([v][rank], its
  // next v rows) of every head of a BF16 kv_b_proj, packed (exact: the same bf16 values).
  void pack_heads(AttentionWeights& attn) {
    const Config& c = config_;
    const int64_t rank = c.kv_lora_rank, nope = c.qk_nope_head_dim, v = c.v_head_dim;
    const int64_t heads = c.num_attention_heads;
    const WeightMatrix& kv_b = attn.kv_b_proj;
    const int64_t key_elements = kernels::packed_head_elements(rank, nope);
    const int64_t value_elements = kernels::packed_head_elements(v, rank);
    auto* keys = reinterpret_cast<uint16_t*>(
        weights_.owned_bytes.emplace_back(size_t(heads * key_elements) * 2).data());
    auto* values = reinterpret_cast<uint16_t*>(
        weights_.owned_bytes.emplace_back(size_t(heads * value_elements) * 2).data());
    std::vector<uint16_t> head_rows(size_t((nope + v) * rank));
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t head_row = h * (nope + v);
      const uint16_t* rows = static_cast<const uint16_t*>(kv_b.data) + head_row * rank;
      if (kv_b.layout == WeightLayout::kRowBlocks) {
        copy_rows_from_row_blocks(kv_b, head_row, nope + v, head_rows.data());
        rows = head_rows.data();
      }
      uint16_t* key = keys + h * key_elements;
      uint16_t* value = values + h * value_elements;
      kernels::pack_head_matrix(rows, rank, nope, /*row_stride=*/1, /*col_stride=*/rank, key);
      kernels::pack_head_matrix(rows + nope * rank, v, rank, rank, 1, value);
      attn.key_heads.push_back({key, rank, nope});
      attn.value_heads.push_back({value, v, rank});
    }
  }

  // Rows [first, first + count) of a kRows matrix (absorb's formats: only BF16 is regrouped): a
  // view when the format allows (FP8 only at block boundaries), else a float32 copy.
  WeightMatrix row_view(const WeightMatrix& m, int64_t first, int64_t count) {
    WeightMatrix view = m;
    view.rows = count;
    if (m.dtype != DType::F8_E4M3) {
      view.data = static_cast<const std::byte*>(m.data) + first * m.row_bytes();
      if (m.group_scale) view.group_scale = m.group_scale + first * m.scale_cols;
      return view;
    }
    if (first % m.block_rows == 0) {
      view.data = static_cast<const std::byte*>(m.data) + first * m.cols;
      view.block_scale = m.block_scale + (first / m.block_rows) * m.scale_cols;
      return view;
    }
    auto& storage = weights_.owned_floats.emplace_back(size_t(count * m.cols));
    for (int64_t r = 0; r < count; ++r)
      for (int64_t col = 0; col < m.cols; ++col) storage[r * m.cols + col] = m.at(first + r, col);
    return WeightMatrix{DType::F32, storage.data(), count, m.cols};
  }

  MoeWeights moe(const std::string& prefix) {
    const Config& c = config_;
    MoeWeights moe;
    moe.gate.weight = matrix(prefix + ".gate.weight", c.n_routed_experts, c.hidden_size);
    const std::string bias_name = prefix + ".gate.e_score_correction_bias";
    if (checkpoint_.find(bias_name))
      moe.gate.e_score_correction_bias = vector(bias_name, c.n_routed_experts);
    else
      moe.gate.e_score_correction_bias.assign(c.n_routed_experts, 0.0f);
    moe.experts.reserve(c.n_routed_experts);
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      moe.experts.push_back(mlp(prefix + ".experts." + std::to_string(e), c.moe_intermediate_size));
    moe.has_shared_experts = c.n_shared_experts > 0;
    if (moe.has_shared_experts)
      moe.shared_experts = mlp(prefix + ".shared_experts", c.moe_intermediate_size * c.n_shared_experts);
    return moe;
  }

 private:
  // Tensors are used in place unless their address is not aligned for their element type
  // (a hand-made file may not pad its header); those are copied once.
  const void* aligned(const TensorEntry& tensor) {
    const size_t alignment = dtype_size(tensor.dtype);
    if (reinterpret_cast<uintptr_t>(tensor.data) % alignment == 0) return tensor.data;
    auto& copy = weights_.owned_floats.emplace_back((tensor.nbytes + 3) / 4);
    std::memcpy(copy.data(), tensor.data, tensor.nbytes);
    return copy.data();
  }

  const Checkpoint& checkpoint_;
  const Config& config_;
  ModelWeights& weights_;
};

}  // namespace

std::shared_ptr<ModelWeights> ModelWeights::load(const Checkpoint& checkpoint, const Config& config,
                                                 const LoadProgress& progress) {
  auto weights = std::make_shared<ModelWeights>();
  WeightLoader loader(checkpoint, config, *weights);
  weights->embed_tokens = loader.matrix("model.embed_tokens.weight", config.vocab_size,
                                        config.hidden_size, WeightLoader::kKeepRows);
  weights->layers.resize(config.num_hidden_layers);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i);
    DecoderLayerWeights& layer = weights->layers[i];
    layer.input_layernorm = loader.norm(prefix + ".input_layernorm.weight", config.hidden_size,
                                        config.rms_norm_eps);
    layer.self_attn = loader.attention(prefix + ".self_attn");
    layer.post_attention_layernorm = loader.norm(prefix + ".post_attention_layernorm.weight",
                                                 config.hidden_size, config.rms_norm_eps);
    layer.is_moe = config.is_moe_layer(i);
    if (layer.is_moe)
      layer.moe = loader.moe(prefix + ".mlp");
    else
      layer.mlp = loader.mlp(prefix + ".mlp", config.intermediate_size);
    if (progress) progress(i + 1, config.num_hidden_layers);
  }
  weights->norm = loader.norm("model.norm.weight", config.hidden_size, config.rms_norm_eps);
  if (config.tie_word_embeddings)
    weights->lm_head = weights->embed_tokens;
  else if (checkpoint.find("lm_head.weight"))  // absent in sequence-classification checkpoints
    weights->lm_head = loader.matrix("lm_head.weight", config.vocab_size, config.hidden_size);
  // A Q8 head multiplies int8 activation codes, 64 columns per VNNI instruction: its input is
  // the final norm's output and its rounding reaches the logits once, not every later layer
  // (measured: the KL to F32 moves from 0.00056 to 0.00061, README `quantize`).
  weights->lm_head.byte_activations = weights->lm_head.dtype == DType::Q8;
  if (checkpoint.find("score.weight"))
    weights->score = loader.matrix("score.weight", config.num_labels, config.hidden_size,
                                   WeightLoader::kKeepRows);
  return weights;
}

}  // namespace dsv3
