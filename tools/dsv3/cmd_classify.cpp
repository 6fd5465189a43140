// dsv3 classify -m DIR (-p TEXT | --ids 0,5,17[;...]) [--mask 1,1,0[;...]] [--labels 1[,0...]]
//               [--label-values 0.5[,...][;...]] [--problem-type T] [--out FILE.npy]
// A DeepseekV3ForSequenceClassification checkpoint (score.weight): prints each row's logits and
// its argmax label (named by id2label), and `loss <value>` with --labels (integer classes) or
// --label-values (regression / multi-label targets), as transformers'
// model(ids, attention_mask=..., labels=...).
#include <cstdio>

#include "api/generation.h"
#include "api/sequence_classifier.h"
#include "args.h"
#include "commands.h"
#include "io/npy.h"
#include "number_lists.h"
#include "sampling_flags.h"
#include "util/error.h"

namespace dsv3::cli {

int run_classify(const CommandArgs& argv) {
  Args args(argv,
            {"--model", "--prompt", "--ids", "--mask", "--labels", "--label-values",
             "--problem-type", "--out", "--activations", "--attention-precision"},
            {"--help"}, {{"-m", "--model"}, {"-p", "--prompt"}});
  if (args.has("--help")) {
    std::fprintf(stderr,
                 "usage: dsv3 classify -m DIR (-p TEXT | --ids 0,5,17[;...]) [--mask 1,1,0[;...]]\n"
                 "       [--labels C[,...] | --label-values V[,...][;...]] [--problem-type T] "
                 "[--out FILE.npy]\n"
                 "       [--activations f32|bf16|auto] [--attention-precision f32|bf16]\n");
    return 0;
  }
  const std::string dir = args.require("--model");
  apply_activation_flag(args);
  if (args.has("--prompt") == args.has("--ids"))
    throw Error("pass exactly one of -p TEXT and --ids");
  std::optional<api::Config> config = api::config_from_pretrained(dir);
  if (args.has("--problem-type")) {
    config->problem_type = args.get("--problem-type");
    config->validate();
  }
  const api::SequenceClassifier classifier = api::SequenceClassifier::from_pretrained(dir, config);

  api::ForwardInputs inputs;
  if (args.has("--prompt"))  // as tokenizer(text): with the BOS
    inputs.input_ids = {api::Tokenizer::from_dir(dir).encode(args.get("--prompt"), true)};
  else
    inputs.input_ids = parse_id_rows(args.get("--ids"), "--ids");
  if (args.has("--mask")) inputs.attention_mask = parse_int32_rows(args.get("--mask"), "--mask");
  if (args.has("--labels"))
    for (const auto& row : parse_int_rows(args.get("--labels"), "--labels"))
      inputs.class_labels.insert(inputs.class_labels.end(), row.begin(), row.end());
  if (args.has("--label-values")) {
    const auto rows = parse_float_rows(args.get("--label-values"), "--label-values");
    std::vector<float> values;
    for (const auto& row : rows) {
      if (row.size() != rows[0].size()) throw Error("--label-values: rows of different lengths");
      values.insert(values.end(), row.begin(), row.end());
    }
    inputs.label_values = api::Tensor({int64_t(rows.size()), int64_t(rows[0].size())}, values);
  }

  const api::ForwardOutputs outputs = classifier.forward(inputs);
  const api::Tensor& logits = outputs.logits;
  for (int64_t b = 0; b < logits.size(0); ++b) {
    const float* row = logits.at({b});
    int64_t best = 0;
    std::printf("logits");
    for (int64_t i = 0; i < logits.size(1); ++i) {
      std::printf(" %.9g", row[i]);
      if (row[i] > row[best]) best = i;
    }
    std::printf("\nlabel %s\n", classifier.config().label_name(best).c_str());
  }
  if (outputs.loss) std::printf("loss %.9g\n", *outputs.loss);
  if (args.has("--out")) write_npy(args.get("--out"), logits.shape, logits.data.data());
  return 0;
}

}  // namespace dsv3::cli
