// dsv3 logits -m DIR --ids 0,5,17[;...] [--out FILE.npy] [--last] [--chunk N] [--mask 1,1,0[;...]]
//             [--positions 0,1,2[;...]] [--labels | --label-ids 5,-100,...] [--hidden-out FILE.npy]
//             [--attentions-out FILE.npy]
// The forward pass of DeepseekV3ForCausalLM as transformers' model(input_ids, attention_mask=...,
// position_ids=..., labels=..., output_hidden_states=True, output_attentions=True):
//   --out            float32 logits [tokens, vocab] ([1, vocab] with --last);
//   --labels         labels = the input ids; prints `loss <value>` (--label-ids: explicit labels);
//   --hidden-out     float32 [num_layers + 1, tokens, hidden], ordered as output_hidden_states;
//   --attentions-out float32 [num_layers, heads, tokens, tokens];
//   --chunk N        feeds the ids N at a time through the cache (must give the same logits);
//   --attention      auto|absorbed|expanded: the MLA form (all must give the same logits).
// Several rows ("a,b,c;d,e,f", each the same length, padded and masked) make a batch; the
// outputs then have a batch axis after the layer axis ([batch, tokens, vocab] for logits).
#include <cstdint>
#include <cstdio>
#include <memory>

#include "api/causal_lm.h"
#include "args.h"
#include "commands.h"
#include "io/npy.h"
#include "number_lists.h"
#include "sampling_flags.h"
#include "util/error.h"

namespace dsv3::cli {

namespace {

// Rows of `rows` restricted to columns [begin, end).
template <typename T>
std::vector<std::vector<T>> columns(const std::vector<std::vector<T>>& rows, size_t begin,
                                    size_t end) {
  std::vector<std::vector<T>> out;
  for (const auto& row : rows) {
    if (end > row.size()) throw Error("a row is shorter than the ids");
    out.emplace_back(row.begin() + begin, row.begin() + end);
  }
  return out;
}

// One .npy of tensors of one shape stacked on a new first axis; `drop_batch` removes the batch
// axis (axis 1 after stacking) of a one-row batch.
void write_stacked(const std::string& path, const std::vector<api::Tensor>& tensors,
                   bool drop_batch) {
  std::vector<float> values;
  for (const auto& tensor : tensors)
    values.insert(values.end(), tensor.data.begin(), tensor.data.end());
  std::vector<int64_t> shape = {int64_t(tensors.size())};
  const auto& inner = tensors.at(0).shape;
  shape.insert(shape.end(), inner.begin() + (drop_batch ? 1 : 0), inner.end());
  write_npy(path, shape, values.data());
}

}  // namespace

int run_logits(const CommandArgs& argv) {
  Args args(argv,
            {"--model", "--ids", "--out", "--chunk", "--mask", "--positions", "--label-ids",
             "--hidden-out", "--attentions-out", "--attention", "--activations", "--attention-precision"},
            {"--last", "--labels", "--help"}, {{"-m", "--model"}});
  if (args.has("--help")) {
    std::fprintf(
        stderr,
        "usage: dsv3 logits -m DIR --ids 0,5,17[;...] [--out FILE.npy] [--last] [--chunk N]\n"
        "       [--mask 1,1,0[;...]] [--positions P,...] [--labels | --label-ids L,...]\n"
        "       [--hidden-out FILE.npy] [--attentions-out FILE.npy] "
        "[--attention auto|absorbed|expanded]\n"
        "       [--activations f32|bf16|auto] [--attention-precision f32|bf16]\n");
    return 0;
  }
  const std::string dir = args.require("--model");
  apply_activation_flag(args);
  const auto ids = parse_id_rows(args.require("--ids"), "--ids");
  const int64_t batch = int64_t(ids.size()), tokens = int64_t(ids[0].size());
  const bool single = batch == 1;
  const int64_t chunk = args.get_int("--chunk", tokens);
  if (chunk <= 0) throw Error("--chunk must be positive");
  const bool last_only = args.has("--last");
  const bool whole_pass_outputs = args.has("--labels") || args.has("--label-ids") ||
                                  args.has("--hidden-out") || args.has("--attentions-out");
  if (whole_pass_outputs && chunk < tokens)
    throw Error(
        "--labels, --label-ids, --hidden-out and --attentions-out need the whole pass (no "
        "--chunk)");
  if (whole_pass_outputs && last_only)
    throw Error("--last cannot be combined with --labels or the trace outputs");

  const api::TokenRows mask =
      args.has("--mask") ? parse_int32_rows(args.get("--mask"), "--mask") : api::TokenRows{};
  const auto positions = args.has("--positions")
                             ? parse_int_rows(args.get("--positions"), "--positions")
                             : std::vector<std::vector<int64_t>>{};

  // --attention: which MLA form the engine uses (both must give the reference logits).
  std::shared_ptr<Model> engine = Model::from_pretrained(dir);
  const std::string mode = args.get("--attention", "auto");
  if (mode == "absorbed")
    engine->set_attention_mode(AttentionMode::kAbsorbed);
  else if (mode == "expanded")
    engine->set_attention_mode(AttentionMode::kExpanded);
  else if (mode != "auto")
    throw Error("--attention must be auto, absorbed or expanded, got \"" + mode + "\"");
  const api::CausalLM model{api::Model(engine)};
  const int64_t vocab = model.config().vocab_size;
  auto cache = std::make_shared<api::Cache>(model.config(), batch);
  std::vector<std::vector<float>> row_logits(static_cast<size_t>(batch));
  api::ForwardOutputs outputs;
  for (int64_t start = 0; start < tokens; start += chunk) {
    const int64_t end = std::min(tokens, start + chunk);
    api::ForwardInputs inputs;
    inputs.input_ids = columns(ids, size_t(start), size_t(end));
    if (!mask.empty()) inputs.attention_mask = columns(mask, 0, size_t(end));
    if (!positions.empty()) inputs.position_ids = columns(positions, size_t(start), size_t(end));
    inputs.past_key_values = cache;
    inputs.logits_to_keep = last_only ? 1 : 0;  // with --last only the very last row is needed
    inputs.output_hidden_states = args.has("--hidden-out");
    inputs.output_attentions = args.has("--attentions-out");
    if (args.has("--labels")) inputs.labels = ids;
    if (args.has("--label-ids"))
      inputs.labels = parse_int32_rows(args.get("--label-ids"), "--label-ids");
    outputs = model.forward(inputs);
    if (last_only && end < tokens) continue;
    const int64_t kept = outputs.logits.size(1);
    for (int64_t b = 0; b < batch; ++b)
      row_logits[b].insert(row_logits[b].end(), outputs.logits.at({b}),
                           outputs.logits.at({b}) + kept * vocab);
  }

  if (args.has("--out")) {
    std::vector<float> logits;
    for (const auto& row : row_logits) logits.insert(logits.end(), row.begin(), row.end());
    const int64_t rows = int64_t(row_logits[0].size()) / vocab;
    if (single)
      write_npy(args.get("--out"), {rows, vocab}, logits.data());
    else
      write_npy(args.get("--out"), {batch, rows, vocab}, logits.data());
  }
  if (args.has("--hidden-out"))
    write_stacked(args.get("--hidden-out"), outputs.hidden_states, single);
  if (args.has("--attentions-out"))
    write_stacked(args.get("--attentions-out"), outputs.attentions, single);
  if (outputs.loss) std::printf("loss %.9g\n", *outputs.loss);
  return 0;
}

}  // namespace dsv3::cli
