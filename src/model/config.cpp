#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace dsv3 {

namespace {

using nlohmann::json;

// Reads typed fields out of a JSON object, naming the field in every error.
class FieldReader {
 public:
  FieldReader(const json& object, std::string where) : object_(object), where_(std::move(where)) {}

  const json* find(const char* name) const {
    auto it = object_.find(name);
    return it == object_.end() ? nullptr : &*it;
  }

  [[noreturn]] void fail(const char* name, const std::string& what) const {
    throw Error(where_ + ": field \"" + name + "\" " + what);
  }

  void read(const char* name, int64_t& out) const {
    const json* value = find(name);
    if (!value) return;
    if (value->is_number_integer()) {
      out = value->get<int64_t>();
    } else if (value->is_number_float() && std::floor(value->get<double>()) == value->get<double>() &&
               std::fabs(value->get<double>()) < 9e15) {
      out = int64_t(value->get<double>());
    } else {
      fail(name, "must be an integer, got " + value->dump());
    }
  }
  void read(const char* name, std::optional<int64_t>& out) const {
    const json* value = find(name);
    if (!value) return;
    if (value->is_null()) {
      out.reset();
      return;
    }
    int64_t number = 0;
    read(name, number);
    out = number;
  }
  void read(const char* name, double& out) const {
    const json* value = find(name);
    if (!value) return;
    if (!value->is_number()) fail(name, "must be a number, got " + value->dump());
    out = value->get<double>();
  }
  void read(const char* name, bool& out) const {
    const json* value = find(name);
    if (!value) return;
    if (!value->is_boolean()) fail(name, "must be true or false, got " + value->dump());
    out = value->get<bool>();
  }
  void read(const char* name, std::string& out) const {
    const json* value = find(name);
    if (!value || value->is_null()) return;
    if (!value->is_string()) fail(name, "must be a string, got " + value->dump());
    out = value->get<std::string>();
  }
  void read(const char* name, std::vector<std::string>& out) const {
    const json* value = find(name);
    if (!value || value->is_null()) return;
    if (!value->is_array()) fail(name, "must be a list of strings, got " + value->dump());
    out.clear();
    for (const auto& item : *value) {
      if (!item.is_string()) fail(name, "must be a list of strings, got " + value->dump());
      out.push_back(item.get<std::string>());
    }
  }
  // An int or a list of ints (eos_token_id).
  void read(const char* name, std::vector<int64_t>& out) const {
    const json* value = find(name);
    if (!value) return;
    out.clear();
    if (value->is_null()) return;
    if (value->is_number_integer()) {
      out.push_back(value->get<int64_t>());
      return;
    }
    if (!value->is_array()) fail(name, "must be an integer or a list of integers, got " + value->dump());
    for (const auto& item : *value) {
      if (!item.is_number_integer())
        fail(name, "must be an integer or a list of integers, got " + value->dump());
      out.push_back(item.get<int64_t>());
    }
  }

 private:
  const json& object_;
  std::string where_;
};

RopeScaling parse_rope_scaling(const json& value, const std::string& where) {
  if (!value.is_object()) throw Error(where + ": field \"rope_scaling\" must be null or an object");
  FieldReader reader(value, where + ": rope_scaling");
  RopeScaling scaling;
  std::string type;
  reader.read("type", type);  // the original key; transformers accepts both
  reader.read("rope_type", type);
  if (type.empty()) throw Error(where + ": field \"rope_scaling\" has no \"type\"/\"rope_type\"");
  scaling.type = type;
  reader.read("factor", scaling.factor);
  reader.read("original_max_position_embeddings", scaling.original_max_position_embeddings);
  if (const json* attention_factor = reader.find("attention_factor");
      attention_factor && !attention_factor->is_null()) {
    double number = 0.0;
    reader.read("attention_factor", number);
    scaling.attention_factor = number;
  }
  // transformers: `get("beta_fast") or 32`, so null and 0 mean the default.
  if (const json* beta = reader.find("beta_fast"); beta && !beta->is_null()) {
    reader.read("beta_fast", scaling.beta_fast);
    if (scaling.beta_fast == 0.0) scaling.beta_fast = 32.0;
  }
  if (const json* beta = reader.find("beta_slow"); beta && !beta->is_null()) {
    reader.read("beta_slow", scaling.beta_slow);
    if (scaling.beta_slow == 0.0) scaling.beta_slow = 1.0;
  }
  if (const json* mscale = reader.find("mscale"); mscale && !mscale->is_null())
    reader.read("mscale", scaling.mscale);
  if (const json* mscale = reader.find("mscale_all_dim"); mscale && !mscale->is_null())
    reader.read("mscale_all_dim", scaling.mscale_all_dim);
  reader.read("truncate", scaling.truncate);
  return scaling;
}

QuantizationConfig parse_quantization(const json& value, const std::string& where) {
  QuantizationConfig quant;
  if (value.is_null()) return quant;
  if (!value.is_object())
    throw Error(where + ": field \"quantization_config\" must be an object");
  FieldReader reader(value, where + ": quantization_config");
  quant.raw = value;
  reader.read("quant_method", quant.quant_method);
  reader.read("fmt", quant.fmt);
  reader.read("activation_scheme", quant.activation_scheme);
  reader.read("q8_modules", quant.q8_modules);
  for (std::string& part : quant.q8_modules) {  // "*part*" -> "part"
    while (!part.empty() && part.front() == '*') part.erase(part.begin());
    while (!part.empty() && part.back() == '*') part.pop_back();
    if (part.empty())
      throw Error(where + ": quantization_config field \"q8_modules\" has an empty entry");
  }
  if (const json* block = reader.find("weight_block_size")) {
    if (!block->is_array() || block->size() != 2 || !(*block)[0].is_number_integer() ||
        !(*block)[1].is_number_integer())
      throw Error(where + ": quantization_config field \"weight_block_size\" must be [rows, cols], got " +
                  block->dump());
    quant.block_rows = (*block)[0].get<int64_t>();
    quant.block_cols = (*block)[1].get<int64_t>();
  }
  return quant;
}

// {"0": "NEGATIVE", "1": "POSITIVE"}: every id from 0 to size - 1 once.
std::vector<std::string> parse_id2label(const json& value, const std::string& where) {
  const std::string field = where + ": field \"id2label\" ";
  if (!value.is_object() || value.empty())
    throw Error(field + "must be an object {\"0\": name, ...}, got " + value.dump());
  std::vector<std::string> names(value.size());
  std::vector<bool> seen(value.size(), false);
  for (const auto& [key, name] : value.items()) {
    size_t id = 0, used = 0;
    try {
      id = std::stoul(key, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != key.size() || id >= names.size() || seen[id])
      throw Error(field + "has key \"" + key + "\"; keys must be the ids 0 .. " +
                  std::to_string(names.size() - 1) + ", each once");
    if (!name.is_string()) throw Error(field + "value of \"" + key + "\" must be a string");
    names[id] = name.get<std::string>();
    seen[id] = true;
  }
  return names;
}

void require_positive(const char* name, int64_t value) {
  if (value <= 0)
    throw Error("config: field \"" + std::string(name) + "\" must be positive, got " +
                std::to_string(value));
}

void require(bool condition, const char* name, const std::string& what) {
  if (!condition) throw Error("config: field \"" + std::string(name) + "\" " + what);
}

}  // namespace

void Config::validate() const {
  require_positive("vocab_size", vocab_size);
  require_positive("hidden_size", hidden_size);
  require_positive("intermediate_size", intermediate_size);
  require_positive("moe_intermediate_size", moe_intermediate_size);
  require_positive("num_hidden_layers", num_hidden_layers);
  require_positive("num_attention_heads", num_attention_heads);
  require_positive("num_key_value_heads", num_key_value_heads);
  require(num_attention_heads % num_key_value_heads == 0, "num_key_value_heads",
          "must divide num_attention_heads");
  require(n_shared_experts >= 0, "n_shared_experts", "must not be negative");
  require_positive("kv_lora_rank", kv_lora_rank);
  if (q_lora_rank) require_positive("q_lora_rank", *q_lora_rank);
  require_positive("qk_rope_head_dim", qk_rope_head_dim);
  require(qk_rope_head_dim % 2 == 0, "qk_rope_head_dim", "must be even (RoPE rotates pairs)");
  require(qk_nope_head_dim >= 0, "qk_nope_head_dim", "must not be negative");
  require_positive("v_head_dim", v_head_dim);
  require(first_k_dense_replace >= 0, "first_k_dense_replace", "must not be negative");
  if (first_k_dense_replace < num_hidden_layers) {  // some layers are MoE
    require_positive("n_routed_experts", n_routed_experts);
    require_positive("n_group", n_group);
    require(n_routed_experts % n_group == 0, "n_group", "must divide n_routed_experts");
    require(experts_per_group() >= 2, "n_group",
            "leaves fewer than 2 experts per group (group scores sum the top 2)");
    require(topk_group >= 1 && topk_group <= n_group, "topk_group", "must be in [1, n_group]");
    require(num_experts_per_tok >= 1 && num_experts_per_tok <= topk_group * experts_per_group(),
            "num_experts_per_tok",
            "must be in [1, topk_group * n_routed_experts / n_group] (the experts of the kept groups)");
    require(std::isfinite(routed_scaling_factor), "routed_scaling_factor", "must be finite");
    require(moe_layer_freq == 1, "moe_layer_freq", "other than 1 is not supported");
    require(scoring_func == "sigmoid", "scoring_func",
            "\"" + scoring_func + "\" is not supported (DeepSeek-V3 routes with \"sigmoid\")");
    require(topk_method == "noaux_tc", "topk_method",
            "\"" + topk_method + "\" is not supported (DeepSeek-V3 uses \"noaux_tc\")");
  }
  require(hidden_act == "silu", "hidden_act", "\"" + hidden_act + "\" is not supported (only \"silu\")");
  require_positive("max_position_embeddings", max_position_embeddings);
  require(rms_norm_eps > 0 && std::isfinite(rms_norm_eps), "rms_norm_eps", "must be positive");
  require(rope_theta > 1.0 && std::isfinite(rope_theta), "rope_theta", "must be greater than 1");
  if (bos_token_id) require(*bos_token_id >= 0, "bos_token_id", "must not be negative");
  for (int64_t eos : eos_token_ids) require(eos >= 0, "eos_token_id", "must not be negative");
  if (pad_token_id) require(*pad_token_id >= 0, "pad_token_id", "must not be negative");
  require(num_nextn_predict_layers >= 0, "num_nextn_predict_layers", "must not be negative");
  if (rope_scaling) {
    const auto& scaling = *rope_scaling;
    require(scaling.type == "default" || scaling.type == "linear" || scaling.type == "dynamic" ||
                scaling.type == "yarn",
            "rope_scaling", "type \"" + scaling.type + "\" is not supported (yarn, linear, dynamic)");
    require(scaling.factor >= 1.0 && std::isfinite(scaling.factor), "rope_scaling",
            "factor must be >= 1");
    if (scaling.original_max_position_embeddings)
      require(*scaling.original_max_position_embeddings > 0, "rope_scaling",
              "original_max_position_embeddings must be positive");
    require(scaling.beta_fast >= scaling.beta_slow, "rope_scaling",
            "beta_fast must not be smaller than beta_slow");
  }
  if (!quantization_config.quant_method.empty()) {
    const QuantizationConfig& quant = quantization_config;
    require(quant.quant_method == "fp8" || quant.quant_method == "dsv3", "quantization_config",
            "quant_method \"" + quant.quant_method + "\" is not supported here (fp8, dsv3)");
    if (quant.quant_method == "fp8")
      require(quant.fmt == "e4m3", "quantization_config",
              "fmt \"" + quant.fmt + "\" is not supported (e4m3)");
    if (quant.quant_method == "dsv3") {
      require(quant.fmt == "q8" || quant.fmt == "q4", "quantization_config",
              "fmt \"" + quant.fmt + "\" is not supported with quant_method dsv3 (q8, q4)");
      require(quant.block_rows == 1 && quant.block_cols == 32, "quantization_config",
              "weight_block_size must be [1, 32] with quant_method dsv3");
      require(quant.q8_modules.empty() || quant.fmt == "q4", "quantization_config",
              "q8_modules is only meaningful with fmt q4");
    }
    require(quantization_config.block_rows > 0 && quantization_config.block_cols > 0,
            "quantization_config", "weight_block_size must be positive");
  }
  require(num_labels >= 1, "num_labels", "must be positive");
  require(id2label.empty() || int64_t(id2label.size()) == num_labels, "id2label",
          "must name num_labels labels");
  require(problem_type.empty() || problem_type == "regression" ||
              problem_type == "single_label_classification" ||
              problem_type == "multi_label_classification",
          "problem_type",
          "\"" + problem_type +
              "\" is not one of regression, single_label_classification, multi_label_classification");
}

Config Config::from_json(const json& object, const std::string& where) {
  if (!object.is_object()) throw Error(where + ": must be a JSON object");
  FieldReader reader(object, where);
  Config config;
  reader.read("vocab_size", config.vocab_size);
  reader.read("hidden_size", config.hidden_size);
  reader.read("intermediate_size", config.intermediate_size);
  reader.read("moe_intermediate_size", config.moe_intermediate_size);
  reader.read("num_hidden_layers", config.num_hidden_layers);
  reader.read("num_attention_heads", config.num_attention_heads);
  config.num_key_value_heads = config.num_attention_heads;  // transformers' default when absent
  reader.read("num_key_value_heads", config.num_key_value_heads);
  reader.read("n_shared_experts", config.n_shared_experts);
  reader.read("n_routed_experts", config.n_routed_experts);
  reader.read("routed_scaling_factor", config.routed_scaling_factor);
  reader.read("kv_lora_rank", config.kv_lora_rank);
  reader.read("q_lora_rank", config.q_lora_rank);
  reader.read("qk_rope_head_dim", config.qk_rope_head_dim);
  reader.read("v_head_dim", config.v_head_dim);
  reader.read("qk_nope_head_dim", config.qk_nope_head_dim);
  reader.read("n_group", config.n_group);
  reader.read("topk_group", config.topk_group);
  reader.read("num_experts_per_tok", config.num_experts_per_tok);
  reader.read("first_k_dense_replace", config.first_k_dense_replace);
  reader.read("norm_topk_prob", config.norm_topk_prob);
  reader.read("hidden_act", config.hidden_act);
  reader.read("max_position_embeddings", config.max_position_embeddings);
  reader.read("initializer_range", config.initializer_range);
  reader.read("rms_norm_eps", config.rms_norm_eps);
  reader.read("use_cache", config.use_cache);
  reader.read("pad_token_id", config.pad_token_id);
  reader.read("bos_token_id", config.bos_token_id);
  reader.read("eos_token_id", config.eos_token_ids);
  reader.read("pretraining_tp", config.pretraining_tp);
  reader.read("tie_word_embeddings", config.tie_word_embeddings);
  reader.read("rope_theta", config.rope_theta);
  if (const json* scaling = reader.find("rope_scaling"); scaling && !scaling->is_null())
    config.rope_scaling = parse_rope_scaling(*scaling, where);
  reader.read("rope_interleave", config.rope_interleave);
  reader.read("attention_bias", config.attention_bias);
  reader.read("attention_dropout", config.attention_dropout);

  reader.read("architectures", config.architectures);
  reader.read("model_type", config.model_type);
  reader.read("num_nextn_predict_layers", config.num_nextn_predict_layers);
  reader.read("scoring_func", config.scoring_func);
  reader.read("topk_method", config.topk_method);
  reader.read("ep_size", config.ep_size);
  reader.read("moe_layer_freq", config.moe_layer_freq);
  reader.read("seq_aux", config.seq_aux);
  reader.read("aux_loss_alpha", config.aux_loss_alpha);
  reader.read("torch_dtype", config.torch_dtype);
  if (const json* quant = reader.find("quantization_config"))
    config.quantization_config = parse_quantization(*quant, where);
  if (const json* labels = reader.find("id2label"); labels && !labels->is_null()) {
    config.id2label = parse_id2label(*labels, where);
    config.num_labels = int64_t(config.id2label.size());
    if (const json* count = reader.find("num_labels"); count && *count != json(config.num_labels))
      throw Error(where + ": field \"num_labels\" is " + count->dump() + " but \"id2label\" has " +
                  std::to_string(config.num_labels) + " labels");
  }
  reader.read("num_labels", config.num_labels);
  reader.read("problem_type", config.problem_type);

  if (!config.model_type.empty() && config.model_type != "deepseek_v3" &&
      config.model_type != "kimi_k2")
    throw Error(where + ": field \"model_type\" is \"" + config.model_type +
                "\", expected \"deepseek_v3\"");
  try {
    config.validate();
  } catch (const Error& error) {
    std::string message = error.what();
    if (message.rfind("config: ", 0) == 0) message = message.substr(8);
    throw Error(where + ": " + message);
  }
  return config;
}

Config Config::from_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot open");
  std::stringstream text;
  text << file.rdbuf();
  json object = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) throw Error(path + ": not valid JSON");
  return from_json(object, path);
}

json Config::to_json() const {
  json object;
  object["architectures"] = architectures;
  object["model_type"] = model_type;
  object["vocab_size"] = vocab_size;
  object["hidden_size"] = hidden_size;
  object["intermediate_size"] = intermediate_size;
  object["moe_intermediate_size"] = moe_intermediate_size;
  object["num_hidden_layers"] = num_hidden_layers;
  object["num_attention_heads"] = num_attention_heads;
  object["num_key_value_heads"] = num_key_value_heads;
  object["n_shared_experts"] = n_shared_experts;
  object["n_routed_experts"] = n_routed_experts;
  object["routed_scaling_factor"] = routed_scaling_factor;
  object["kv_lora_rank"] = kv_lora_rank;
  object["q_lora_rank"] = q_lora_rank ? json(*q_lora_rank) : json(nullptr);
  object["qk_rope_head_dim"] = qk_rope_head_dim;
  object["v_head_dim"] = v_head_dim;
  object["qk_nope_head_dim"] = qk_nope_head_dim;
  object["n_group"] = n_group;
  object["topk_group"] = topk_group;
  object["num_experts_per_tok"] = num_experts_per_tok;
  object["first_k_dense_replace"] = first_k_dense_replace;
  object["norm_topk_prob"] = norm_topk_prob;
  object["hidden_act"] = hidden_act;
  object["max_position_embeddings"] = max_position_embeddings;
  object["initializer_range"] = initializer_range;
  object["rms_norm_eps"] = rms_norm_eps;
  object["use_cache"] = use_cache;
  object["pad_token_id"] = pad_token_id ? json(*pad_token_id) : json(nullptr);
  object["bos_token_id"] = bos_token_id ? json(*bos_token_id) : json(nullptr);
  object["eos_token_id"] =
      eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids);
  object["pretraining_tp"] = pretraining_tp;
  object["tie_word_embeddings"] = tie_word_embeddings;
  object["rope_theta"] = rope_theta;
  if (rope_scaling) {
    json scaling;
    scaling["type"] = rope_scaling->type;
    scaling["factor"] = rope_scaling->factor;
    if (rope_scaling->original_max_position_embeddings)
      scaling["original_max_position_embeddings"] = *rope_scaling->original_max_position_embeddings;
    if (rope_scaling->attention_factor) scaling["attention_factor"] = *rope_scaling->attention_factor;
    if (rope_scaling->type == "yarn") {
      scaling["beta_fast"] = rope_scaling->beta_fast;
      scaling["beta_slow"] = rope_scaling->beta_slow;
      if (rope_scaling->mscale != 0.0) scaling["mscale"] = rope_scaling->mscale;
      if (rope_scaling->mscale_all_dim != 0.0) scaling["mscale_all_dim"] = rope_scaling->mscale_all_dim;
    }
    object["rope_scaling"] = scaling;
  } else {
    object["rope_scaling"] = nullptr;
  }
  object["rope_interleave"] = rope_interleave;
  object["attention_bias"] = attention_bias;
  object["attention_dropout"] = attention_dropout;
  object["ep_size"] = ep_size;
  object["moe_layer_freq"] = moe_layer_freq;
  object["num_nextn_predict_layers"] = num_nextn_predict_layers;
  object["scoring_func"] = scoring_func;
  object["topk_method"] = topk_method;
  object["seq_aux"] = seq_aux;
  object["aux_loss_alpha"] = aux_loss_alpha;
  object["torch_dtype"] = torch_dtype;
  if (!quantization_config.quant_method.empty()) {
    json quant = quantization_config.raw.is_object() ? quantization_config.raw : json::object();
    quant["quant_method"] = quantization_config.quant_method;
    quant["fmt"] = quantization_config.fmt;
    quant["activation_scheme"] = quantization_config.activation_scheme;
    quant["weight_block_size"] = {quantization_config.block_rows, quantization_config.block_cols};
    object["quantization_config"] = quant;
  }
  if (!problem_type.empty()) object["problem_type"] = problem_type;
  if (num_labels != 2) object["num_labels"] = num_labels;
  // transformers writes the label maps of every config; we do when labels matter.
  if (num_labels != 2 || !id2label.empty() ||
      std::find(architectures.begin(), architectures.end(), "DeepseekV3ForSequenceClassification") !=
          architectures.end()) {
    json names = json::object(), ids = json::object();
    for (int64_t id = 0; id < num_labels; ++id) {
      names[std::to_string(id)] = label_name(id);
      ids[label_name(id)] = id;
    }
    object["id2label"] = names;
    object["label2id"] = ids;
  }
  object["transformers_version"] = "4.46.3";
  return object;
}

}  // namespace dsv3
