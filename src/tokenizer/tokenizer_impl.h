// The loaded state behind Tokenizer, shared by tokenizer.cpp and streaming_decoder.cpp.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {

struct Tokenizer::Impl {
  // Encoding.
  std::vector<AddedToken> added_tokens;
  std::unordered_map<std::string, int32_t> added_id_of_content;
  AddedTokenMatcher raw_added_matcher;         // tokens with normalized == false
  AddedTokenMatcher normalized_added_matcher;  // tokens with normalized == true
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<BpeModel> model;
  std::vector<int32_t> special_prefix_ids, special_suffix_ids;  // add_special_tokens

  // Decoding: per id, what it contributes to the decoder's byte stream.
  enum class IdKind : uint8_t { Unknown, Model, Added, AddedSpecial };
  std::vector<IdKind> kind_of_id;
  std::vector<std::string> bytes_of_id;
  bool join_with_spaces = false;  // no decoder: tokens are joined with " " as `tokenizers` does

  // tokenizer_config.json.
  nlohmann::json config = nlohmann::json::object();
  std::string chat_template, bos_token, eos_token;
  std::optional<int32_t> bos_id, eos_id;

  bool is_known(int32_t id) const {
    return id >= 0 && size_t(id) < kind_of_id.size() && kind_of_id[id] != IdKind::Unknown;
  }
  bool is_special(int32_t id) const {
    return is_known(id) && kind_of_id[id] == IdKind::AddedSpecial;
  }
  // Throws dsv3::Error naming the id when unknown.
  void check_known(int32_t id) const;
};

}  // namespace dsv3
