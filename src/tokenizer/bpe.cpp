#include "tokenizer/bpe.h"

#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace dsv3 {
namespace {

// Lets unordered_map<std::string, ...> be searched with a string_view without a copy.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
template <typename Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

uint64_t pair_key(int32_t left, int32_t right) {
  return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

struct Merge {
  int32_t rank;
  int32_t merged_id;
};

// A bounded word -> ids cache shared by all callers; emptied when full (the vocabulary of
// real text is Zipfian, so the frequent words come straight back).
class WordCache {
 public:
  static constexpr size_t kCapacity = 50000;
  static constexpr size_t kLongestWord = 128;

  bool find(std::string_view word, std::vector<int32_t>& ids) const {
    if (word.size() > kLongestWord) return false;
    std::lock_guard lock(mutex_);
    auto it = entries_.find(word);
    if (it == entries_.end()) return false;
    ids.insert(ids.end(), it->second.begin(), it->second.end());
    return true;
  }
  void insert(std::string_view word, const int32_t* ids, size_t count) const {
    if (word.size() > kLongestWord) return;
    std::lock_guard lock(mutex_);
    if (entries_.size() >= kCapacity) entries_.clear();
    entries_.emplace(std::string(word), std::vector<int32_t>(ids, ids + count));
  }

 private:
  mutable std::mutex mutex_;
  mutable StringMap<std::vector<int32_t>> entries_;
};

}  // namespace

struct BpeModel::Impl {
  StringMap<int32_t> vocab;
  std::vector<std::string> token_of_id;
  std::vector<bool> id_present;
  std::unordered_map<uint64_t, Merge> merges;
  int32_t byte_to_id[256];  // id of each byte's byte-level character, or -1
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  WordCache cache;

  void initial_symbols(std::string_view word, bool raw_bytes, std::vector<int32_t>& symbols) const;
  void merge(std::vector<int32_t>& symbols) const;
};

BpeModel::BpeModel(const nlohmann::json& config, const std::string& where)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  if (config.value("type", "BPE") != "BPE")
    throw Error(where + ".type: model type \"" + config.value("type", "") +
                "\" is not supported (only BPE)");
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (config.contains(field) && !config[field].is_null() && config[field] != "")
      throw Error(where + "." + field + " is not supported");
  if (config.contains("dropout") && config["dropout"].is_number() &&
      config["dropout"].get<double>() > 0)
    throw Error(where + ".dropout: BPE dropout is not supported (results would be random)");

  const auto& vocab = config.at("vocab");
  if (!vocab.is_object()) throw Error(where + ".vocab: expected an object");
  m.vocab.reserve(vocab.size());
  int32_t limit = 0;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = it.value().get<int32_t>();
    if (id < 0) throw Error(where + ".vocab[\"" + it.key() + "\"]: negative id");
    m.vocab.emplace(it.key(), id);
    limit = std::max(limit, id + 1);
  }
  m.token_of_id.resize(limit);
  m.id_present.assign(limit, false);
  for (const auto& [token, id] : m.vocab) {
    m.token_of_id[id] = token;
    m.id_present[id] = true;
  }

  const auto& merges = config.at("merges");
  m.merges.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& entry = merges[rank];
    std::string left, right;
    if (entry.is_string()) {  // "a b"
      const std::string text = entry.get<std::string>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
        throw Error(where + ".merges[" + std::to_string(rank) + "]: expected \"left right\"");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2) {  // ["a", "b"]
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      throw Error(where + ".merges[" + std::to_string(rank) + "]: expected a pair");
    }
    auto left_id = m.vocab.find(left), right_id = m.vocab.find(right),
         merged_id = m.vocab.find(left + right);
    if (left_id == m.vocab.end() || right_id == m.vocab.end() || merged_id == m.vocab.end())
      throw Error(where + ".merges[" + std::to_string(rank) + "]: \"" + left + " " + right +
                  "\" uses a token missing from the vocabulary");
    // A repeated pair keeps its first (lowest) rank.
    m.merges.emplace(pair_key(left_id->second, right_id->second),
                     Merge{int32_t(rank), merged_id->second});
  }

  for (int byte = 0; byte < 256; ++byte) {
    auto it = m.vocab.find(byte_level::char_of_byte(uint8_t(byte)));
    m.byte_to_id[byte] = it == m.vocab.end() ? -1 : it->second;
  }
  if (config.contains("unk_token") && config["unk_token"].is_string()) {
    const std::string unk = config["unk_token"];
    auto it = m.vocab.find(unk);
    if (it == m.vocab.end()) throw Error(where + ".unk_token: \"" + unk + "\" is not in the vocab");
    m.unk_id = it->second;
  }
  m.fuse_unk = config.value("fuse_unk", false);
  m.byte_fallback = config.value("byte_fallback", false);
  m.ignore_merges = config.value("ignore_merges", false);
}

BpeModel::~BpeModel() = default;

void BpeModel::Impl::initial_symbols(std::string_view word, bool raw_bytes,
                                     std::vector<int32_t>& symbols) const {
  bool previous_was_unk = false;
  auto push_unknown = [&](std::string_view piece) {
    if (byte_fallback) {
      std::vector<int32_t> byte_ids;
      for (char byte : piece) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned char>(byte));
        auto it = vocab.find(std::string_view(name));
        if (it == vocab.end()) break;
        byte_ids.push_back(it->second);
      }
      if (byte_ids.size() == piece.size()) {
        symbols.insert(symbols.end(), byte_ids.begin(), byte_ids.end());
        previous_was_unk = false;
        return;
      }
    }
    if (!unk_id) return;  // no unk token: the character is dropped, as in `tokenizers`
    if (!(fuse_unk && previous_was_unk)) symbols.push_back(*unk_id);
    previous_was_unk = true;
  };
  if (raw_bytes) {
    for (char byte : word) {
      const int32_t id = byte_to_id[static_cast<unsigned char>(byte)];
      if (id >= 0) {
        symbols.push_back(id);
        previous_was_unk = false;
      } else {
        push_unknown(byte_level::char_of_byte(static_cast<unsigned char>(byte)));
      }
    }
    return;
  }
  for (size_t pos = 0; pos < word.size();) {
    const size_t length = utf8::sequence_length(static_cast<unsigned char>(word[pos]));
    const std::string_view character = word.substr(pos, length);
    auto it = vocab.find(character);
    if (it != vocab.end()) {
      symbols.push_back(it->second);
      previous_was_unk = false;
    } else {
      push_unknown(character);
    }
    pos += length;
  }
}

void BpeModel::Impl::merge(std::vector<int32_t>& symbols) const {
  const int n = static_cast<int>(symbols.size());
  if (n < 2) return;
  // Doubly linked list over the symbols; merged-away symbols get id -1.
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank, position, merged_id;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : position > other.position;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int left) {
    const int right = next[left];
    if (right < 0) return;
    auto it = merges.find(pair_key(symbols[left], symbols[right]));
    if (it != merges.end()) queue.push({it->second.rank, left, it->second.merged_id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    const int left = top.position;
    if (symbols[left] < 0 || next[left] < 0) continue;
    const int right = next[left];
    // Skip stale candidates: the pair at this position changed since it was queued.
    auto it = merges.find(pair_key(symbols[left], symbols[right]));
    if (it == merges.end() || it->second.merged_id != top.merged_id || it->second.rank != top.rank)
      continue;
    symbols[left] = top.merged_id;
    symbols[right] = -1;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    if (prev[left] >= 0) consider(prev[left]);
    consider(left);
  }
  size_t kept = 0;
  for (int i = 0; i < n; ++i)
    if (symbols[i] >= 0) symbols[kept++] = symbols[i];
  symbols.resize(kept);
}

void BpeModel::encode_word(std::string_view word, bool raw_bytes, std::vector<int32_t>& ids) const {
  const Impl& m = *impl_;
  if (m.cache.find(word, ids)) return;
  const size_t first = ids.size();
  if (m.ignore_merges) {
    std::string spelled;
    if (raw_bytes) byte_level::append_chars(spelled, word);
    auto it = m.vocab.find(raw_bytes ? std::string_view(spelled) : word);
    if (it != m.vocab.end()) {
      ids.push_back(it->second);
      m.cache.insert(word, ids.data() + first, 1);
      return;
    }
  }
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  m.initial_symbols(word, raw_bytes, symbols);
  m.merge(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  m.cache.insert(word, symbols.data(), symbols.size());
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = impl_->vocab.find(token);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || id >= id_limit() || !impl_->id_present[id]) return nullptr;
  return &impl_->token_of_id[id];
}

int32_t BpeModel::id_limit() const { return static_cast<int32_t>(impl_->token_of_id.size()); }

}  // namespace dsv3
