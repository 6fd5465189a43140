// DeepseekV3Model: embeddings, decoder layers and the final norm; forward() gives the last
// hidden state (and on request every layer's hidden states and attention weights).
//
//   auto model = dsv3::api::Model::from_pretrained("path/to/checkpoint");
//   dsv3::api::ForwardInputs inputs;
//   inputs.input_ids = {{0, 5, 17}};
//   dsv3::api::Tensor hidden = model.forward(inputs).last_hidden_state;  // [1][3][hidden_size]
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "api/config.h"
#include "api/forward.h"
#include "model/model.h"

namespace dsv3::api {

class Model {
 public:
  // DIR/config.json (or `config`) and the safetensors of DIR, memory-mapped and used in place.
  static Model from_pretrained(const std::string& dir, std::optional<Config> config = {});
  explicit Model(std::shared_ptr<const dsv3::Model> engine);

  const Config& config() const { return engine_->config(); }
  // Outputs last_hidden_state, hidden_states, attentions and past_key_values.
  ForwardOutputs forward(const ForwardInputs& inputs) const;

  // The engine underneath (dsv3::Generator, custom loops).
  const dsv3::Model& engine() const { return *engine_; }
  std::shared_ptr<const dsv3::Model> shared_engine() const { return engine_; }

 private:
  std::shared_ptr<const dsv3::Model> engine_;
};

}  // namespace dsv3::api
