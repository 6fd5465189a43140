// A forward pass as in transformers: a padded batch with an attention mask, labels for the
// loss, the hidden states of every layer, and the cache carried into the next step.
//   example_forward DIR
#include <cstdio>

#include "api/dsv3.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CHECKPOINT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const auto lm = dsv3::api::CausalLM::from_pretrained(argv[1]);
    const int32_t pad = int32_t(lm.config().pad_token_id.value_or(1));

    dsv3::api::ForwardInputs inputs;
    inputs.input_ids = {{pad, pad, 0, 5, 17}, {0, 7, 9, 11, 13}};  // row 0 left-padded
    inputs.attention_mask = {{0, 0, 1, 1, 1}, {1, 1, 1, 1, 1}};
    inputs.labels = {{-100, -100, 0, 5, 17}, {0, 7, 9, 11, 13}};  // model(ids, labels=ids)
    inputs.output_hidden_states = true;
    inputs.use_cache = true;
    const dsv3::api::ForwardOutputs out = lm.forward(inputs);
    std::printf("logits [%lld, %lld, %lld], loss %.4f, %zu hidden states\n",
                (long long)out.logits.size(0), (long long)out.logits.size(1),
                (long long)out.logits.size(2), *out.loss, out.hidden_states.size());

    // The next step: one new token per row, the cache from before, the mask grown by one.
    dsv3::api::ForwardInputs next;
    next.input_ids = {{42}, {43}};
    next.attention_mask = {{0, 0, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1}};
    next.past_key_values = out.past_key_values;
    const dsv3::api::Tensor step = lm.forward(next).logits;  // [2][1][vocab]
    std::printf("next step: logits [%lld, %lld, %lld], %lld tokens cached\n",
                (long long)step.size(0), (long long)step.size(1), (long long)step.size(2),
                (long long)out.past_key_values->get_seq_length());
  } catch (const dsv3::Error& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
  return 0;
}
