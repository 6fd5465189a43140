#include "model/config.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace dsv3 {
namespace {

using nlohmann::json;

std::string error_of(const json& object) {
  try {
    Config::from_json(object, "config.json");
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(Config, DefaultsAreDeepseekV3) {
  Config config = Config::from_json(json::object());
  EXPECT_EQ(config.vocab_size, 129280);
  EXPECT_EQ(config.hidden_size, 7168);
  EXPECT_EQ(config.intermediate_size, 18432);
  EXPECT_EQ(config.moe_intermediate_size, 2048);
  EXPECT_EQ(config.num_hidden_layers, 61);
  EXPECT_EQ(config.num_attention_heads, 128);
  EXPECT_EQ(config.num_key_value_heads, 128);
  EXPECT_EQ(config.n_shared_experts, 1);
  EXPECT_EQ(config.n_routed_experts, 256);
  EXPECT_DOUBLE_EQ(config.routed_scaling_factor, 2.5);
  EXPECT_EQ(config.kv_lora_rank, 512);
  EXPECT_EQ(config.q_lora_rank, 1536);
  EXPECT_EQ(config.qk_rope_head_dim, 64);
  EXPECT_EQ(config.v_head_dim, 128);
  EXPECT_EQ(config.qk_nope_head_dim, 128);
  EXPECT_EQ(config.qk_head_dim(), 192);
  EXPECT_EQ(config.n_group, 8);
  EXPECT_EQ(config.topk_group, 4);
  EXPECT_EQ(config.num_experts_per_tok, 8);
  EXPECT_EQ(config.first_k_dense_replace, 3);
  EXPECT_TRUE(config.norm_topk_prob);
  EXPECT_EQ(config.hidden_act, "silu");
  EXPECT_EQ(config.max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(config.rms_norm_eps, 1e-6);
  EXPECT_EQ(config.bos_token_id, 0);
  ASSERT_EQ(config.eos_token_ids.size(), 1u);
  EXPECT_EQ(config.eos_token_ids[0], 1);
  EXPECT_FALSE(config.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(config.rope_theta, 10000.0);
  EXPECT_FALSE(config.rope_scaling.has_value());
  EXPECT_TRUE(config.rope_interleave);
  EXPECT_FALSE(config.attention_bias);
}

TEST(Config, ReadsTheRealDeepseekV3Config) {
  // The fields of deepseek-ai/DeepSeek-V3's config.json that differ from the defaults.
  json object = json::parse(R"({
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "max_position_embeddings": 163840, "num_nextn_predict_layers": 1, "q_lora_rank": 1536,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]},
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                     "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                     "type": "yarn"},
    "scoring_func": "sigmoid", "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
    "pad_token_id": null, "eos_token_id": 1, "bos_token_id": 0})");
  Config config = Config::from_json(object);
  EXPECT_EQ(config.max_position_embeddings, 163840);
  EXPECT_EQ(config.num_nextn_predict_layers, 1);
  ASSERT_TRUE(config.rope_scaling.has_value());
  EXPECT_EQ(config.rope_scaling->type, "yarn");
  EXPECT_DOUBLE_EQ(config.rope_scaling->factor, 40.0);
  EXPECT_EQ(config.rope_scaling->original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(config.rope_scaling->mscale_all_dim, 1.0);
  EXPECT_TRUE(config.is_fp8());
  EXPECT_EQ(config.quantization_config.block_rows, 128);
  EXPECT_FALSE(config.pad_token_id.has_value());
}

TEST(Config, NullQLoraRankAndEosList) {
  Config config = Config::from_json(json::parse(R"({"q_lora_rank": null, "eos_token_id": [1, 2]})"));
  EXPECT_FALSE(config.q_lora_rank.has_value());
  EXPECT_EQ(config.eos_token_ids, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(Config::from_json(config.to_json()).eos_token_ids, config.eos_token_ids);
}

TEST(Config, RoundTripsThroughJson) {
  Config config = Config::from_json(json::parse(
      R"({"hidden_size": 64, "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "mscale": 0.5,
          "mscale_all_dim": 0.7, "original_max_position_embeddings": 512}})"));
  Config again = Config::from_json(config.to_json());
  EXPECT_EQ(again.hidden_size, 64);
  ASSERT_TRUE(again.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(again.rope_scaling->mscale_all_dim, 0.7);
  EXPECT_EQ(again.rope_scaling->original_max_position_embeddings, 512);
}

TEST(Config, RejectsInvalidValuesNamingTheField) {
  EXPECT_NE(error_of(json{{"hidden_size", "big"}}).find("\"hidden_size\""), std::string::npos);
  EXPECT_NE(error_of(json{{"hidden_size", -3}}).find("\"hidden_size\""), std::string::npos);
  EXPECT_NE(error_of(json{{"n_group", 7}}).find("\"n_group\""), std::string::npos);
  EXPECT_NE(error_of(json{{"topk_group", 9}}).find("\"topk_group\""), std::string::npos);
  EXPECT_NE(error_of(json{{"num_experts_per_tok", 200}}).find("\"num_experts_per_tok\""),
            std::string::npos);
  EXPECT_NE(error_of(json{{"qk_rope_head_dim", 63}}).find("\"qk_rope_head_dim\""), std::string::npos);
  EXPECT_NE(error_of(json{{"hidden_act", "gelu"}}).find("\"hidden_act\""), std::string::npos);
  EXPECT_NE(error_of(json{{"rms_norm_eps", 0}}).find("\"rms_norm_eps\""), std::string::npos);
  EXPECT_NE(error_of(json{{"norm_topk_prob", 1}}).find("\"norm_topk_prob\""), std::string::npos);
  EXPECT_NE(error_of(json{{"scoring_func", "softmax"}}).find("\"scoring_func\""), std::string::npos);
  EXPECT_NE(error_of(json{{"rope_scaling", {{"type", "longrope"}, {"factor", 2.0}}}}).find("rope_scaling"),
            std::string::npos);
  EXPECT_NE(error_of(json{{"rope_scaling", {{"factor", 2.0}}}}).find("rope_scaling"), std::string::npos);
  EXPECT_NE(error_of(json{{"rope_scaling", {{"type", "yarn"}, {"factor", 0.5}}}}).find("factor"),
            std::string::npos);
  EXPECT_NE(error_of(json{{"quantization_config", {{"quant_method", "gptq"}}}}).find("quantization_config"),
            std::string::npos);
  EXPECT_NE(error_of(json{{"model_type", "llama"}}).find("\"model_type\""), std::string::npos);
  EXPECT_NE(error_of(json::array()).find("JSON object"), std::string::npos);
  // The file name is part of the message.
  EXPECT_EQ(error_of(json{{"vocab_size", 0}}).rfind("config.json: ", 0), 0u);
}

}  // namespace
}  // namespace dsv3
