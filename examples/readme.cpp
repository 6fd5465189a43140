// The example of README.md's "Library API" section, compiled with the project so it stays true.
//   example_readme DIR
#include <cstdio>

#include "api/dsv3.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  using namespace dsv3::api;
  const CausalLM model = CausalLM::from_pretrained(argv[1]);

  ForwardInputs inputs;
  inputs.input_ids = {{0, 5, 17, 100}, {0, 7, 9, 1}};  // a batch; row 1 right-padded
  inputs.attention_mask = {{1, 1, 1, 1}, {1, 1, 1, 0}};
  inputs.labels = {{0, 5, 17, 100}, {0, 7, 9, -100}};  // loss as model(ids, labels=ids)
  inputs.output_hidden_states = true;

  const ForwardOutputs out = model.forward(inputs);
  std::printf("logits [%lld, %lld, %lld]  loss %.4f  hidden states %zu\n",
              (long long)out.logits.size(0), (long long)out.logits.size(1),
              (long long)out.logits.size(2), *out.loss, out.hidden_states.size());
  return 0;
}
