// Loading a checkpoint directory: its config, the model, and the classes transformers offers.
//   example_load DIR
#include <cstdio>

#include "api/dsv3.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CHECKPOINT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const dsv3::api::Config config = dsv3::api::config_from_pretrained(argv[1]);
    std::printf("%s: %lld layers, hidden %lld, %lld routed experts, vocabulary %lld\n",
                config.architectures.empty() ? "?" : config.architectures[0].c_str(),
                (long long)config.num_hidden_layers, (long long)config.hidden_size,
                (long long)config.n_routed_experts, (long long)config.vocab_size);
    const auto model = dsv3::api::Model::from_pretrained(argv[1]);  // DeepseekV3Model
    std::printf("loaded; one token of cache takes %lld bytes\n",
                (long long)dsv3::api::Cache(model.config(), 1, model.engine().cache_element())
                    .sequence(0)
                    .bytes_per_token());
  } catch (const dsv3::Error& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
