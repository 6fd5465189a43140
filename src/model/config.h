// DeepseekV3Config: every field of the Hugging Face configuration with its documented default,
// plus the extras found in the real DeepSeek-V3 config.json. Read from config.json or built in
// code; validate() rejects inconsistent values with a message naming the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3 {

struct RopeScaling {
  std::string type = "default";  // "default", "linear", "dynamic" or "yarn"
  double factor = 1.0;
  std::optional<int64_t> original_max_position_embeddings;
  std::optional<double> attention_factor;  // yarn: overrides the mscale ratio
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;          // 0 = absent
  double mscale_all_dim = 0.0;  // 0 = absent
  bool truncate = true;
};

// The official FP8 checkpoints: {"quant_method": "fp8", "fmt": "e4m3",
// "activation_scheme": "dynamic", "weight_block_size": [128, 128]}. `dsv3 quantize` writes
// {"quant_method": "dsv3", "fmt": "q8" | "q4", "weight_block_size": [1, 32], ...}
// (tensor/block_quant.h), a q4 one with "q8_modules": the name parts of its tensors kept in Q8.
struct QuantizationConfig {
  std::string quant_method;  // "" = not quantized
  std::string fmt = "e4m3";
  // dsv3 q4 only: a linear weight whose name contains one of these is Q8 (e.g. the shared
  // experts, read for every token). Written as "*part*".
  std::vector<std::string> q8_modules;
  std::string activation_scheme = "dynamic";
  int64_t block_rows = 128;
  int64_t block_cols = 128;
  nlohmann::json raw;  // as found, for writing back
};

struct Config {
  // DeepseekV3Config, in the order of the transformers documentation.
  int64_t vocab_size = 129280;
  int64_t hidden_size = 7168;
  int64_t intermediate_size = 18432;
  int64_t moe_intermediate_size = 2048;
  int64_t num_hidden_layers = 61;
  int64_t num_attention_heads = 128;
  int64_t num_key_value_heads = 128;
  int64_t n_shared_experts = 1;
  int64_t n_routed_experts = 256;
  double routed_scaling_factor = 2.5;
  int64_t kv_lora_rank = 512;
  std::optional<int64_t> q_lora_rank = 1536;  // null: queries use one q_proj
  int64_t qk_rope_head_dim = 64;
  int64_t v_head_dim = 128;
  int64_t qk_nope_head_dim = 128;
  int64_t n_group = 8;
  int64_t topk_group = 4;
  int64_t num_experts_per_tok = 8;
  int64_t first_k_dense_replace = 3;
  bool norm_topk_prob = true;
  std::string hidden_act = "silu";
  int64_t max_position_embeddings = 4096;
  double initializer_range = 0.02;
  double rms_norm_eps = 1e-6;
  bool use_cache = true;
  std::optional<int64_t> pad_token_id;
  std::optional<int64_t> bos_token_id = 0;
  std::vector<int64_t> eos_token_ids = {1};  // eos_token_id: an int or a list
  int64_t pretraining_tp = 1;
  bool tie_word_embeddings = false;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool rope_interleave = true;
  bool attention_bias = false;
  double attention_dropout = 0.0;

  // Extras of the real DeepSeek-V3 config.json.
  std::vector<std::string> architectures = {"DeepseekV3ForCausalLM"};
  std::string model_type = "deepseek_v3";
  int64_t num_nextn_predict_layers = 0;  // multi-token-prediction layers stored after the main ones
  std::string scoring_func = "sigmoid";
  std::string topk_method = "noaux_tc";
  int64_t ep_size = 1;
  int64_t moe_layer_freq = 1;
  bool seq_aux = true;
  double aux_loss_alpha = 0.001;
  std::string torch_dtype = "bfloat16";
  QuantizationConfig quantization_config;
  // Sequence classification (DeepseekV3ForSequenceClassification).
  int64_t num_labels = 2;
  std::vector<std::string> id2label;  // label names by id; empty: "LABEL_<id>"
  std::string problem_type;  // "", "regression", "single_label_classification", ...

  // Derived, as in DeepseekV3Config.
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t experts_per_group() const { return n_routed_experts / n_group; }
  bool is_moe_layer(int64_t layer) const { return layer >= first_k_dense_replace; }
  bool is_fp8() const { return quantization_config.quant_method == "fp8"; }
  // Q8 / Q4 linear weights written by `dsv3 quantize`.
  bool is_block_quantized() const { return quantization_config.quant_method == "dsv3"; }
  std::string label_name(int64_t id) const {
    return id >= 0 && id < int64_t(id2label.size()) ? id2label[id] : "LABEL_" + std::to_string(id);
  }

  // Throws dsv3::Error naming the first invalid field.
  void validate() const;

  static Config from_json(const nlohmann::json& json, const std::string& where = "config.json");
  static Config from_file(const std::string& path);
  nlohmann::json to_json() const;
};

}  // namespace dsv3
