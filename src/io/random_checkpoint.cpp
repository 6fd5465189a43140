#include "io/random_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/safetensors.h"
#include "util/error.h"
#include "util/random.h"

namespace dsv3 {

namespace fs = std::filesystem;
using nlohmann::json;

Config preset_config(const std::string& name) {
  Config c;
  // A small model with the real vocabulary and every DeepSeek-V3 feature switched on.
  c.vocab_size = 129280;
  c.hidden_size = 192;
  c.intermediate_size = 384;
  c.moe_intermediate_size = 96;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.q_lora_rank = 96;
  c.kv_lora_rank = 128;
  c.qk_rope_head_dim = 32;
  c.qk_nope_head_dim = 48;
  c.v_head_dim = 40;
  c.n_routed_experts = 16;
  c.n_group = 4;
  c.topk_group = 2;
  c.num_experts_per_tok = 4;
  c.n_shared_experts = 1;
  c.first_k_dense_replace = 1;
  c.max_position_embeddings = 4096;
  c.num_nextn_predict_layers = 1;
  if (name == "tiny") return c;
  if (name == "tiny-yarn") {
    // DeepSeek-V3's long-context YaRN (factor 40) over a short original context, so the
    // frequency ramp touches the rope dimensions; mscale != mscale_all_dim so the cos/sin
    // factor and the softmax-scale correction both matter.
    RopeScaling yarn;
    yarn.type = "yarn";
    yarn.factor = 40.0;
    yarn.original_max_position_embeddings = 128;
    yarn.beta_fast = 32.0;
    yarn.beta_slow = 1.0;
    yarn.mscale = 1.0;
    yarn.mscale_all_dim = 0.8;
    c.rope_scaling = yarn;
    c.max_position_embeddings = 5120;
    c.norm_topk_prob = false;
    c.routed_scaling_factor = 1.5;
    return c;
  }
  if (name == "tiny-noqlora") {
    c.q_lora_rank.reset();
    c.rope_interleave = false;
    c.attention_bias = true;
    c.n_shared_experts = 2;
    c.first_k_dense_replace = 2;
    c.num_hidden_layers = 4;
    return c;
  }
  if (name == "tiny-smallvocab") {
    c.vocab_size = 512;
    c.hidden_size = 64;
    c.intermediate_size = 128;
    c.moe_intermediate_size = 32;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 2;
    c.q_lora_rank = 32;
    c.kv_lora_rank = 32;
    c.qk_rope_head_dim = 16;
    c.qk_nope_head_dim = 16;
    c.v_head_dim = 16;
    c.n_routed_experts = 8;
    c.n_group = 2;
    c.topk_group = 1;
    c.num_experts_per_tok = 2;
    c.tie_word_embeddings = true;
    c.num_nextn_predict_layers = 0;
    return c;
  }
  if (name == "bench") {
    // ../shared/bench/bench-config.json: 1.22 B parameters, a realistic MoE shape.
    c.hidden_size = 1024;
    c.intermediate_size = 2816;
    c.moe_intermediate_size = 512;
    c.num_hidden_layers = 10;
    c.num_attention_heads = 16;
    c.num_key_value_heads = 16;
    c.n_shared_experts = 1;
    c.n_routed_experts = 64;
    c.kv_lora_rank = 256;
    c.q_lora_rank = 384;
    c.qk_rope_head_dim = 64;
    c.v_head_dim = 64;
    c.qk_nope_head_dim = 64;
    c.n_group = 8;
    c.topk_group = 4;
    c.num_experts_per_tok = 6;
    c.first_k_dense_replace = 1;
    c.num_nextn_predict_layers = 0;
    return c;
  }
  std::string known;
  for (const auto& preset : preset_names()) known += (known.empty() ? "" : ", ") + preset;
  throw Error("unknown preset \"" + name + "\" (known: " + known + ")");
}

std::vector<std::string> preset_names() {
  return {"tiny", "tiny-yarn", "tiny-noqlora", "tiny-smallvocab", "bench"};
}

namespace {

// Uniform with mean 0 and standard deviation `std`.
float centered(Random& random, double std) {
  return float((random.uniform() * 2.0 - 1.0) * std * std::sqrt(3.0));
}

enum class Kind { kEmbedding, kProjection, kNorm, kRouter, kRouterBias, kBias, kOutput };

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  Kind kind;
};

// Every tensor of the checkpoint, in the order Hugging Face writes them.
std::vector<TensorPlan> plan_tensors(const Config& c, bool sequence_classification) {
  std::vector<TensorPlan> plan;
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  auto add = [&](std::string name, std::vector<int64_t> shape, Kind kind) {
    plan.push_back({std::move(name), std::move(shape), kind});
  };
  auto add_mlp = [&](const std::string& prefix, int64_t intermediate) {
    add(prefix + ".gate_proj.weight", {intermediate, hidden}, Kind::kProjection);
    add(prefix + ".up_proj.weight", {intermediate, hidden}, Kind::kProjection);
    add(prefix + ".down_proj.weight", {hidden, intermediate}, Kind::kProjection);
  };
  auto add_layer = [&](int64_t i, bool moe) {
    const std::string p = "model.layers." + std::to_string(i);
    add(p + ".input_layernorm.weight", {hidden}, Kind::kNorm);
    if (c.q_lora_rank) {
      add(p + ".self_attn.q_a_proj.weight", {*c.q_lora_rank, hidden}, Kind::kProjection);
      if (c.attention_bias) add(p + ".self_attn.q_a_proj.bias", {*c.q_lora_rank}, Kind::kBias);
      add(p + ".self_attn.q_a_layernorm.weight", {*c.q_lora_rank}, Kind::kNorm);
      add(p + ".self_attn.q_b_proj.weight", {heads * c.qk_head_dim(), *c.q_lora_rank},
          Kind::kProjection);
    } else {
      add(p + ".self_attn.q_proj.weight", {heads * c.qk_head_dim(), hidden}, Kind::kProjection);
    }
    add(p + ".self_attn.kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, hidden},
        Kind::kProjection);
    if (c.attention_bias)
      add(p + ".self_attn.kv_a_proj_with_mqa.bias", {c.kv_lora_rank + c.qk_rope_head_dim},
          Kind::kBias);
    add(p + ".self_attn.kv_a_layernorm.weight", {c.kv_lora_rank}, Kind::kNorm);
    add(p + ".self_attn.kv_b_proj.weight", {heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank},
        Kind::kProjection);
    add(p + ".self_attn.o_proj.weight", {hidden, heads * c.v_head_dim}, Kind::kProjection);
    if (c.attention_bias) add(p + ".self_attn.o_proj.bias", {hidden}, Kind::kBias);
    add(p + ".post_attention_layernorm.weight", {hidden}, Kind::kNorm);
    if (!moe) {
      add_mlp(p + ".mlp", c.intermediate_size);
      return;
    }
    add(p + ".mlp.gate.weight", {c.n_routed_experts, hidden}, Kind::kRouter);
    add(p + ".mlp.gate.e_score_correction_bias", {c.n_routed_experts}, Kind::kRouterBias);
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
      add_mlp(p + ".mlp.experts." + std::to_string(e), c.moe_intermediate_size);
    if (c.n_shared_experts > 0)
      add_mlp(p + ".mlp.shared_experts", c.moe_intermediate_size * c.n_shared_experts);
  };

  add("model.embed_tokens.weight", {c.vocab_size, hidden}, Kind::kEmbedding);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) add_layer(i, c.is_moe_layer(i));
  // Multi-token-prediction modules follow the main layers (DeepSeek-V3 paper, section 2.2);
  // inference ignores them, but loading must cope with them being there.
  for (int64_t m = 0; m < c.num_nextn_predict_layers; ++m) {
    const int64_t i = c.num_hidden_layers + m;
    const std::string p = "model.layers." + std::to_string(i);
    add(p + ".enorm.weight", {hidden}, Kind::kNorm);
    add(p + ".hnorm.weight", {hidden}, Kind::kNorm);
    add(p + ".eh_proj.weight", {hidden, 2 * hidden}, Kind::kProjection);
    add_layer(i, true);
    add(p + ".shared_head.norm.weight", {hidden}, Kind::kNorm);
  }
  add("model.norm.weight", {hidden}, Kind::kNorm);
  if (sequence_classification)
    add("score.weight", {c.num_labels, hidden}, Kind::kOutput);
  else if (!c.tie_word_embeddings)
    add("lm_head.weight", {c.vocab_size, hidden}, Kind::kOutput);
  return plan;
}

std::vector<float> random_values(const TensorPlan& tensor, Random& random) {
  int64_t count = 1;
  for (int64_t d : tensor.shape) count *= d;
  std::vector<float> values(count);
  const double fan_in = double(tensor.shape.back());
  switch (tensor.kind) {
    case Kind::kEmbedding:
      for (float& v : values) v = centered(random, 1.0);
      break;
    case Kind::kProjection:
    case Kind::kRouter:
    case Kind::kOutput:
      for (float& v : values) v = centered(random, 1.0 / std::sqrt(fan_in));
      break;
    case Kind::kNorm:
      for (float& v : values) v = float(0.6 + 0.8 * random.uniform());
      break;
    case Kind::kRouterBias:
      // Non-negative, so experts of dropped groups (filled with 0) are never chosen.
      for (float& v : values) v = float(0.1 * random.uniform());
      break;
    case Kind::kBias:
      for (float& v : values) v = centered(random, 0.1);
      break;
  }
  return values;
}

std::vector<std::byte> to_bytes(const std::vector<float>& values, DType dtype) {
  std::vector<std::byte> bytes(values.size() * dtype_size(dtype));
  if (dtype == DType::F32) {
    std::memcpy(bytes.data(), values.data(), bytes.size());
  } else {  // BF16
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t bits = f32_to_bf16(values[i]);
      std::memcpy(bytes.data() + 2 * i, &bits, 2);
    }
  }
  return bytes;
}

// The official FP8 layout: e4m3 values and, per 128x128 block, weight_scale_inv = amax / 448
// so that weight = fp8 * weight_scale_inv.
void quantize_fp8(const TensorPlan& tensor, const std::vector<float>& values, int64_t block_rows,
                  int64_t block_cols, std::vector<TensorToWrite>& out) {
  const int64_t rows = tensor.shape[0], cols = tensor.shape[1];
  const int64_t scale_rows = (rows + block_rows - 1) / block_rows;
  const int64_t scale_cols = (cols + block_cols - 1) / block_cols;
  std::vector<float> scales(scale_rows * scale_cols);
  std::vector<std::byte> codes(rows * cols);
  for (int64_t br = 0; br < scale_rows; ++br) {
    for (int64_t bc = 0; bc < scale_cols; ++bc) {
      const int64_t r_end = std::min(rows, (br + 1) * block_rows);
      const int64_t c_end = std::min(cols, (bc + 1) * block_cols);
      float amax = 0.0f;
      for (int64_t r = br * block_rows; r < r_end; ++r)
        for (int64_t col = bc * block_cols; col < c_end; ++col)
          amax = std::max(amax, std::fabs(values[r * cols + col]));
      const float scale = amax > 0.0f ? amax / 448.0f : 1.0f;
      scales[br * scale_cols + bc] = scale;
      for (int64_t r = br * block_rows; r < r_end; ++r)
        for (int64_t col = bc * block_cols; col < c_end; ++col)
          codes[r * cols + col] = std::byte(f32_to_fp8_e4m3(values[r * cols + col] / scale));
    }
  }
  out.push_back({tensor.name, DType::F8_E4M3, tensor.shape, std::move(codes)});
  out.push_back({tensor.name + "_scale_inv", DType::F32, {scale_rows, scale_cols},
                 to_bytes(scales, DType::F32)});
}

void write_json(const fs::path& path, const json& value) {
  std::ofstream file(path);
  if (!file) throw Error(path.string() + ": cannot open for writing");
  file << value.dump(2) << "\n";
  if (!file) throw Error(path.string() + ": write failed");
}

}  // namespace

void write_random_checkpoint(const std::string& out_dir, Config config,
                             const RandomCheckpointOptions& options) {
  if (options.dtype != "f32" && options.dtype != "bf16" && options.dtype != "fp8")
    throw Error("--dtype must be f32, bf16 or fp8, got \"" + options.dtype + "\"");
  if (options.shards < 1 || options.shards > 99) throw Error("--shards must be in [1, 99]");
  if (options.dtype == "fp8") {
    config.quantization_config.quant_method = "fp8";
    config.quantization_config.fmt = "e4m3";
    config.quantization_config.activation_scheme = "dynamic";
    config.quantization_config.block_rows = 128;
    config.quantization_config.block_cols = 128;
  }
  config.torch_dtype = options.dtype == "f32" ? "float32" : "bfloat16";
  if (options.sequence_classification) {
    config.architectures = {"DeepseekV3ForSequenceClassification"};
    // The score head reads the last token that is not padding, found by pad_token_id (without
    // one transformers refuses batches). DeepSeek-V3's tokenizer pads with its EOS.
    if (!config.pad_token_id && !config.eos_token_ids.empty())
      config.pad_token_id = config.eos_token_ids.front();
  }
  config.validate();

  fs::create_directories(out_dir);
  const fs::path dir(out_dir);
  const DType float_dtype = options.dtype == "f32" ? DType::F32 : DType::BF16;
  const auto plan = plan_tensors(config, options.sequence_classification);

  // Spread tensors over the shards by size, keeping the order.
  int64_t total_elements = 0;
  for (const auto& tensor : plan) {
    int64_t count = 1;
    for (int64_t d : tensor.shape) count *= d;
    total_elements += count;
  }
  Random random(options.seed * 0x2545f4914f6cdd1dull + 1);
  json weight_map = json::object();
  int64_t total_bytes = 0;
  size_t next = 0;
  int64_t elements_done = 0;
  for (int64_t shard = 0; shard < options.shards; ++shard) {
    std::vector<TensorToWrite> tensors;
    const int64_t shard_end = total_elements * (shard + 1) / options.shards;
    while (next < plan.size() && (elements_done < shard_end || shard + 1 == options.shards)) {
      const TensorPlan& tensor = plan[next++];
      std::vector<float> values = random_values(tensor, random);
      elements_done += int64_t(values.size());
      const bool fp8 = options.dtype == "fp8" && tensor.kind == Kind::kProjection;
      if (fp8) {
        quantize_fp8(tensor, values, 128, 128, tensors);
      } else {
        // The official checkpoints keep e_score_correction_bias in float32.
        const DType dtype = tensor.kind == Kind::kRouterBias ? DType::F32 : float_dtype;
        tensors.push_back({tensor.name, dtype, tensor.shape, to_bytes(values, dtype)});
      }
    }
    // Laid out as Python's safetensors writer lays them out: by element size, largest first,
    // in plan order within each size. So an MLP's gate_proj and up_proj lie back to back, and
    // so do their FP8 scales (model/weights.cpp stacks them into one product).
    std::stable_sort(tensors.begin(), tensors.end(),
                     [](const TensorToWrite& a, const TensorToWrite& b) {
                       return dtype_size(a.dtype) > dtype_size(b.dtype);
                     });
    char name[64];
    if (options.shards == 1)
      std::snprintf(name, sizeof(name), "model.safetensors");
    else
      std::snprintf(name, sizeof(name), "model-%05lld-of-%05lld.safetensors",
                    (long long)(shard + 1), (long long)options.shards);
    for (const auto& tensor : tensors) {
      weight_map[tensor.name] = name;
      total_bytes += int64_t(tensor.bytes.size());
    }
    write_safetensors((dir / name).string(), tensors, {{"format", "pt"}});
  }
  if (options.shards > 1)
    write_json(dir / "model.safetensors.index.json",
               json{{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}});

  write_json(dir / "config.json", config.to_json());
  json generation = {{"_from_model_config", true},
                     {"bos_token_id", config.bos_token_id ? json(*config.bos_token_id) : json(nullptr)},
                     {"eos_token_id", config.eos_token_ids.size() == 1 ? json(config.eos_token_ids[0])
                                                                       : json(config.eos_token_ids)},
                     {"do_sample", true},
                     {"temperature", 0.6},
                     {"top_p", 0.95},
                     {"transformers_version", "4.46.3"}};
  write_json(dir / "generation_config.json", generation);

  if (!options.tokenizer_dir.empty()) {
    for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
      const fs::path source = fs::path(options.tokenizer_dir) / file;
      if (!fs::exists(source)) throw Error(source.string() + ": not found");
      fs::copy_file(source, dir / file, fs::copy_options::overwrite_existing);
    }
  }
}

}  // namespace dsv3
