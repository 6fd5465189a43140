// Text <-> token ids with exactly the results of Hugging Face `tokenizers` (and, for the BOS,
// of `transformers`), driven by a model directory's tokenizer.json and tokenizer_config.json.
//
// encode: added tokens are cut out first (tokenizer.json "added_tokens"), the rest is
// normalized, pre-tokenized into words (pre_tokenizer.h) and each word is BPE-encoded (bpe.h).
// decode: ids -> tokens -> bytes through the ByteLevel decoder, invalid UTF-8 runs -> U+FFFD.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

class Tokenizer {
 public:
  // `dir` holds tokenizer.json and (optional) tokenizer_config.json (and optional
  // chat_template.jinja). Throws dsv3::Error naming the file and field on bad content.
  static Tokenizer from_dir(const std::string& dir);
  // The same from JSON text already in memory (`config_json` may be empty).
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view config_json,
                             const std::string& where = "tokenizer.json");

  // `add_special_tokens` adds what `transformers`' tokenizer(text) adds: for DeepSeek-V3
  // (LlamaTokenizerFast, add_bos_token) one leading BOS. Throws dsv3::Error on invalid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Throws dsv3::Error on an id that names no token.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // One past the largest id, counting added tokens (== the number of tokens when ids have no
  // gaps, as in DeepSeek-V3: 128815).
  int32_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // throws dsv3::Error on an unknown id
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  const std::string& bos_token() const;  // "" when tokenizer_config.json names none
  const std::string& eos_token() const;
  bool is_special(int32_t id) const;
  // "chat_template" of tokenizer_config.json (or chat_template.jinja); "" if none.
  const std::string& chat_template() const;
  const nlohmann::json& tokenizer_config() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  static std::shared_ptr<Impl> load(std::string_view tokenizer_json, std::string_view config_json,
                                    const std::string& where);
  std::shared_ptr<const Impl> impl_;  // immutable after loading, so copies share it
  friend class StreamingDecoder;
};

// Incremental detokenization for streaming: push ids one at a time; the concatenation of the
// returned pieces (plus finish()) equals decode(all ids), and no piece ends inside a UTF-8
// character (bytes of an unfinished character wait for the next ids).
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  std::string push(int32_t id);  // throws dsv3::Error on an unknown id
  std::string finish();          // flushes held bytes (an unfinished character -> U+FFFD)

 private:
  std::shared_ptr<const Tokenizer::Impl> tokenizer_;
  bool skip_special_tokens_;
  bool first_token_ = true;
  std::string pending_bytes_;
};

}  // namespace dsv3
