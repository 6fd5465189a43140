// The model's weights, named as in the Hugging Face checkpoint and described once here.
// Matrices point into the memory-mapped checkpoint (no copies); small vectors (norms, biases)
// and tensors derived at load time (the absorbed MLA projections) are owned.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "kernels/head_matvec.h"
#include "model/config.h"
#include "tensor/weight_matrix.h"

namespace dsv3 {

// Called after each layer is loaded (layers done, total layers).
using LoadProgress = std::function<void(int64_t done, int64_t total)>;

struct Linear {
  WeightMatrix weight;
  std::vector<float> bias;  // empty: no bias
};

struct RmsNormWeights {
  std::vector<float> weight;
  float eps = 1e-6f;
};

// SwiGLU MLP: down(silu(gate(x)) * up(x)). Dense layers, routed experts and shared experts.
struct MlpWeights {
  WeightMatrix gate_proj, up_proj, down_proj;
  // gate_proj's rows then up_proj's as one matrix when the checkpoint stores them back to back
  // (stacked_rows; a view, no copy): the two projections then run as one product. Else empty.
  WeightMatrix gate_up;
};

struct AttentionWeights {
  Linear q_proj;  // when q_lora_rank is null
  Linear q_a_proj;
  RmsNormWeights q_a_layernorm;
  WeightMatrix q_b_proj;
  Linear kv_a_proj_with_mqa;  // hidden -> kv_lora_rank + qk_rope_head_dim
  RmsNormWeights kv_a_layernorm;
  WeightMatrix kv_b_proj;  // kv_lora_rank -> heads * (qk_nope_head_dim + v_head_dim)
  Linear o_proj;
  // kv_b_proj split per head for attention over the latent cache ("absorbed", DeepSeek-V2
  // paper 2.1.2): W_UK^T, [kv_lora_rank][qk_nope_head_dim], and W_UV,
  // [v_head_dim][kv_lora_rank], both multiplied with float activations.
  // - A BF16 kv_b_proj: key_heads[h] and value_heads[h], packed at load for
  //   kernels::head_matvec (the same values).
  // - Otherwise key_absorb[h] is W_UK^T transposed once at load into float32, and value_up[h]
  //   a view of kv_b_proj's rows where the format allows (else a float32 copy). When
  //   key_absorb_in_place (a Q8/Q4 kv_b_proj) key_absorb[h] is W_UK itself instead,
  //   [qk_nope_head_dim][kv_lora_rank], a view of kv_b_proj's rows applied transposed
  //   (kernels/matmul_transposed.h): its stored bytes are read, no float copy.
  std::vector<kernels::PackedHeadMatrix> key_heads;
  std::vector<kernels::PackedHeadMatrix> value_heads;
  std::vector<WeightMatrix> key_absorb;
  bool key_absorb_in_place = false;
  std::vector<WeightMatrix> value_up;
};

struct RouterWeights {
  WeightMatrix weight;                       // [n_routed_experts][hidden]
  std::vector<float> e_score_correction_bias;  // [n_routed_experts], zeros when absent
};

struct MoeWeights {
  RouterWeights gate;
  std::vector<MlpWeights> experts;
  MlpWeights shared_experts;  // intermediate = moe_intermediate_size * n_shared_experts
  bool has_shared_experts = false;
};

struct DecoderLayerWeights {
  RmsNormWeights input_layernorm;
  AttentionWeights self_attn;
  RmsNormWeights post_attention_layernorm;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

struct ModelWeights {
  WeightMatrix embed_tokens;
  std::vector<DecoderLayerWeights> layers;
  RmsNormWeights norm;
  WeightMatrix lm_head;  // the embedding when tie_word_embeddings
  WeightMatrix score;    // DeepseekV3ForSequenceClassification's head, if present

  // Loads every tensor the config calls for, checking names, shapes and dtypes.
  static std::shared_ptr<ModelWeights> load(const Checkpoint& checkpoint, const Config& config,
                                           const LoadProgress& progress = {});

  // Storage owned by the weights (converted scales, realigned tensors, derived matrices).
  std::deque<std::vector<float>> owned_floats;
  std::deque<std::vector<std::byte>> owned_bytes;
};

}  // namespace dsv3
