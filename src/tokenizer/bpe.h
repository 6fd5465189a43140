// The BPE model of tokenizer.json ("model": {"type": "BPE"}): a word becomes its characters'
// ids, then adjacent pairs are merged, always the pair with the lowest merge rank first
// (leftmost on ties), until no listed merge applies. Results for repeated words are cached.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {

class BpeModel {
 public:
  // `config` is the "model" object; `where` names it in errors.
  BpeModel(const nlohmann::json& config, const std::string& where);
  ~BpeModel();

  // Appends the ids of one pre-tokenized word. With `raw_bytes`, `word` holds raw bytes that
  // stand for their GPT-2 byte-level characters (the ByteLevel pre-tokenizer's output).
  void encode_word(std::string_view word, bool raw_bytes, std::vector<int32_t>& ids) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // nullptr when the model has no token with this id.
  const std::string* id_to_token(int32_t id) const;
  // One past the largest id of the model's vocabulary.
  int32_t id_limit() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv3
