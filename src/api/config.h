// DeepseekV3Config for the library API: every field of the Hugging Face configuration with its
// default (model/config.h). Read it from a model directory, from JSON, or set fields in code:
//
//   dsv3::api::Config config = dsv3::api::Config::from_file(dir + "/config.json");
//   dsv3::api::Config small;  small.num_hidden_layers = 2;  small.validate();
#pragma once

#include <string>

#include "model/config.h"

namespace dsv3::api {

using Config = dsv3::Config;

// DIR/config.json (AutoConfig.from_pretrained(dir)); throws dsv3::Error naming the field.
inline Config config_from_pretrained(const std::string& dir) {
  return Config::from_file(dir + "/config.json");
}

}  // namespace dsv3::api
