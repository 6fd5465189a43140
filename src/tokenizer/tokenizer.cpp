#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace dsv3 {
namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path.string() + ": cannot open");
  std::ostringstream content;
  content << file.rdbuf();
  return content.str();
}

nlohmann::json parse_json(std::string_view text, const std::string& where) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& error) {
    throw Error(where + ": invalid JSON: " + error.what());
  }
}

// tokenizer_config.json spells special tokens as a string or as {"content": ...}.
std::string token_content(const nlohmann::json& config, const char* field) {
  if (!config.contains(field)) return "";
  const auto& value = config[field];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value["content"].is_string())
    return value["content"].get<std::string>();
  return "";
}

void load_added_tokens(Tokenizer::Impl& t, const nlohmann::json& list, const std::string& where) {
  if (list.is_null()) return;
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& entry = list[i];
    AddedToken token;
    token.content = entry.at("content").get<std::string>();
    token.id = entry.at("id").get<int32_t>();
    if (token.id < 0)
      throw Error(where + ".added_tokens[" + std::to_string(i) + "].id: negative id");
    token.special = entry.value("special", false);
    token.lstrip = entry.value("lstrip", false);
    token.rstrip = entry.value("rstrip", false);
    token.single_word = entry.value("single_word", false);
    token.normalized = entry.value("normalized", !token.special);
    t.added_id_of_content.emplace(token.content, token.id);
    t.added_tokens.push_back(std::move(token));
  }
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const auto& token : t.added_tokens) {
    if (token.normalized) {
      std::string pattern = token.content;
      if (t.normalizer) t.normalizer->normalize(pattern);
      normalized.push_back(token);
      normalized_patterns.push_back(std::move(pattern));
    } else {
      raw.push_back(token);
      raw_patterns.push_back(token.content);
    }
  }
  t.raw_added_matcher.build(raw, raw_patterns);
  t.normalized_added_matcher.build(normalized, normalized_patterns);
}

void load_decoder(Tokenizer::Impl& t, const nlohmann::json& decoder, const std::string& where) {
  bool byte_level = false;
  if (decoder.is_null()) {
    t.join_with_spaces = true;
  } else if (decoder.value("type", "") == "ByteLevel") {
    byte_level = true;
  } else {
    throw Error(where + ": decoder type \"" + decoder.value("type", "") + "\" is not supported");
  }
  int32_t id_limit = t.model->id_limit();
  for (const auto& token : t.added_tokens) id_limit = std::max(id_limit, token.id + 1);
  t.kind_of_id.assign(id_limit, Tokenizer::Impl::IdKind::Unknown);
  t.bytes_of_id.assign(id_limit, std::string());
  auto set_bytes = [&](int32_t id, const std::string& token) {
    // The ByteLevel decoder maps a token's characters back to bytes, and keeps a token with
    // characters outside the byte map (an added token) as its UTF-8 text.
    if (!byte_level || !byte_level::append_bytes(t.bytes_of_id[id], token))
      t.bytes_of_id[id] = token;
  };
  for (int32_t id = 0; id < t.model->id_limit(); ++id) {
    if (const std::string* token = t.model->id_to_token(id)) {
      t.kind_of_id[id] = Tokenizer::Impl::IdKind::Model;
      set_bytes(id, *token);
    }
  }
  for (const auto& token : t.added_tokens) {  // added tokens take precedence, as in `tokenizers`
    t.kind_of_id[token.id] =
        token.special ? Tokenizer::Impl::IdKind::AddedSpecial : Tokenizer::Impl::IdKind::Added;
    t.bytes_of_id[token.id].clear();
    set_bytes(token.id, token.content);
  }
}

std::optional<int32_t> lookup(const Tokenizer::Impl& t, std::string_view token) {
  auto it = t.added_id_of_content.find(std::string(token));
  if (it != t.added_id_of_content.end()) return it->second;
  return t.model->token_to_id(token);
}

// The ids `add_special_tokens` puts around a sequence.
void load_post_processor(Tokenizer::Impl& t, const nlohmann::json& processor,
                         const std::string& where) {
  auto id_of = [&](const std::string& token, const std::string& field) {
    auto id = lookup(t, token);
    if (!id) throw Error(field + ": token \"" + token + "\" is not in the vocabulary");
    return *id;
  };
  // transformers' LlamaTokenizerFast (DeepSeek-V3's class) replaces the post-processor with
  // "[BOS] $A [EOS]" as add_bos_token / add_eos_token say; honour that when the config says so.
  if (t.config.contains("add_bos_token") || t.config.contains("add_eos_token")) {
    if (t.config.value("add_bos_token", true) && !t.bos_token.empty())
      t.special_prefix_ids.push_back(id_of(t.bos_token, "tokenizer_config.json bos_token"));
    if (t.config.value("add_eos_token", false) && !t.eos_token.empty())
      t.special_suffix_ids.push_back(id_of(t.eos_token, "tokenizer_config.json eos_token"));
    return;
  }
  if (processor.is_null()) return;
  const std::string type = processor.value("type", "");
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "Sequence") {
    const auto& list = processor.at("processors");
    for (size_t i = 0; i < list.size(); ++i)
      load_post_processor(t, list[i], where + ".processors[" + std::to_string(i) + "]");
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    t.special_prefix_ids.push_back(processor.at("cls").at(1).get<int32_t>());
    t.special_suffix_ids.push_back(processor.at("sep").at(1).get<int32_t>());
    return;
  }
  if (type == "TemplateProcessing") {
    bool after_sequence = false;
    for (const auto& piece : processor.at("single")) {
      if (piece.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
      const auto& special = processor.at("special_tokens").at(name);
      for (const auto& id : special.at("ids"))
        (after_sequence ? t.special_suffix_ids : t.special_prefix_ids).push_back(id.get<int32_t>());
    }
    return;
  }
  throw Error(where + ": post_processor type \"" + type + "\" is not supported");
}

std::string find_chat_template(const nlohmann::json& config) {
  if (!config.contains("chat_template")) return "";
  const auto& value = config["chat_template"];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {  // [{"name": "default", "template": ...}, ...]
    for (const auto& entry : value)
      if (entry.value("name", "") == "default") return entry.value("template", "");
    if (!value.empty()) return value[0].value("template", "");
  }
  return "";
}

}  // namespace

void Tokenizer::Impl::check_known(int32_t id) const {
  if (!is_known(id)) throw Error("unknown token id " + std::to_string(id));
}

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  const std::filesystem::path root(dir);
  const auto tokenizer_path = root / "tokenizer.json";
  if (!std::filesystem::exists(tokenizer_path))
    throw Error(tokenizer_path.string() + ": not found (is -m a model directory?)");
  const std::string tokenizer_json = read_file(tokenizer_path);
  const auto config_path = root / "tokenizer_config.json";
  const std::string config_json =
      std::filesystem::exists(config_path) ? read_file(config_path) : std::string();
  auto impl = load(tokenizer_json, config_json, tokenizer_path.string());
  // Newer checkpoints keep the template in its own file.
  const auto template_path = root / "chat_template.jinja";
  if (impl->chat_template.empty() && std::filesystem::exists(template_path))
    impl->chat_template = read_file(template_path);
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view config_json,
                               const std::string& where) {
  return Tokenizer(load(tokenizer_json, config_json, where));
}

std::shared_ptr<Tokenizer::Impl> Tokenizer::load(std::string_view tokenizer_json,
                                                 std::string_view config_json,
                                                 const std::string& where) {
  auto t = std::make_shared<Impl>();
  const nlohmann::json root = parse_json(tokenizer_json, where);
  if (!config_json.empty()) {
    t->config = parse_json(config_json, "tokenizer_config.json");
    if (!t->config.is_object()) throw Error("tokenizer_config.json: expected a JSON object");
  }
  t->chat_template = find_chat_template(t->config);
  t->bos_token = token_content(t->config, "bos_token");
  t->eos_token = token_content(t->config, "eos_token");
  try {
    t->normalizer =
        make_normalizer(root.value("normalizer", nlohmann::json()), where + " normalizer");
    t->pre_tokenizer = std::make_unique<PreTokenizer>(root.value("pre_tokenizer", nlohmann::json()),
                                                      where + " pre_tokenizer");
    t->model = std::make_unique<BpeModel>(root.at("model"), where + " model");
    load_added_tokens(*t, root.value("added_tokens", nlohmann::json()), where);
    load_decoder(*t, root.value("decoder", nlohmann::json()), where + " decoder");
    if (!t->bos_token.empty()) t->bos_id = lookup(*t, t->bos_token);
    if (!t->eos_token.empty()) t->eos_id = lookup(*t, t->eos_token);
    load_post_processor(*t, root.value("post_processor", nlohmann::json()),
                        where + " post_processor");
  } catch (const nlohmann::json::exception& error) {
    throw Error(where + ": unexpected content: " + error.what());
  }
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& t = *impl_;
  if (size_t bad = utf8::find_invalid(text); bad != std::string_view::npos)
    throw Error("text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = t.special_prefix_ids;

  TextArena arena;
  std::vector<TextSegment> raw_segments, normalized_segments;
  std::vector<std::string_view> words;
  const bool raw_bytes = t.pre_tokenizer->words_need_byte_mapping();
  auto encode_plain = [&](std::string_view plain) {
    words.clear();
    t.pre_tokenizer->split(plain, words, arena);
    for (std::string_view word : words) t.model->encode_word(word, raw_bytes, ids);
  };

  t.raw_added_matcher.split(text, 0, text.size(), raw_segments);
  for (const TextSegment& segment : raw_segments) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    std::string_view plain = text.substr(segment.begin, segment.end - segment.begin);
    if (t.normalizer) {
      arena.emplace_back(plain);
      t.normalizer->normalize(arena.back());
      plain = arena.back();
    }
    if (t.normalized_added_matcher.empty()) {
      encode_plain(plain);
      continue;
    }
    normalized_segments.clear();
    t.normalized_added_matcher.split(plain, 0, plain.size(), normalized_segments);
    for (const TextSegment& piece : normalized_segments) {
      if (piece.token_id >= 0)
        ids.push_back(piece.token_id);
      else
        encode_plain(plain.substr(piece.begin, piece.end - piece.begin));
    }
  }
  if (add_special_tokens)
    ids.insert(ids.end(), t.special_suffix_ids.begin(), t.special_suffix_ids.end());
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& t = *impl_;
  std::string bytes;
  bool first = true;
  for (int32_t id : ids) {
    t.check_known(id);
    if (skip_special_tokens && t.is_special(id)) continue;
    if (t.join_with_spaces && !first) bytes += ' ';
    bytes += t.bytes_of_id[id];
    first = false;
  }
  return utf8::decode_lossy(bytes);
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->kind_of_id.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  return lookup(*impl_, token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  const Impl& t = *impl_;
  t.check_known(id);
  if (t.kind_of_id[id] != Impl::IdKind::Model) {
    for (const auto& token : t.added_tokens)
      if (token.id == id) return token.content;
  }
  return *t.model->id_to_token(id);
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos_id; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos_id; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }
bool Tokenizer::is_special(int32_t id) const { return impl_->is_special(id); }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const nlohmann::json& Tokenizer::tokenizer_config() const { return impl_->config; }

}  // namespace dsv3
