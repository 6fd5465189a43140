#include "tokenizer/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "util/error.h"

namespace dsv3 {
namespace {

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

SplitBehavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (name == "Contiguous") return SplitBehavior::Contiguous;
  throw Error(where + ".behavior: unknown split behavior \"" + name + "\"");
}

struct Span {
  size_t begin, end;
  bool flag;  // "is a match" on input to the behavior, "remove" on output
};

// The behaviors as `tokenizers`' NormalizedString::split defines them, on the list of
// alternating non-match / match spans covering a piece.
void apply_behavior(SplitBehavior behavior, std::vector<Span>& spans) {
  switch (behavior) {
    case SplitBehavior::Removed:
      return;  // matches carry remove = true already
    case SplitBehavior::Isolated:
      for (auto& span : spans) span.flag = false;
      return;
    case SplitBehavior::Contiguous:
    case SplitBehavior::MergedWithPrevious: {
      std::vector<Span> merged;
      bool previous_match = false;
      for (const auto& span : spans) {
        const bool merge = behavior == SplitBehavior::Contiguous ? span.flag == previous_match
                                                                 : span.flag && !previous_match;
        if (merge && !merged.empty())
          merged.back().end = span.end;
        else
          merged.push_back({span.begin, span.end, false});
        previous_match = span.flag;
      }
      spans = std::move(merged);
      return;
    }
    case SplitBehavior::MergedWithNext: {
      std::vector<Span> merged;
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->flag && !previous_match && !merged.empty())
          merged.back().begin = it->begin;
        else
          merged.push_back({it->begin, it->end, false});
        previous_match = it->flag;
      }
      spans.assign(merged.rbegin(), merged.rend());
      return;
    }
  }
}

class SplitStep : public PreTokenizerStep {
 public:
  SplitStep(const nlohmann::json& config, const std::string& where) {
    const auto& pattern = config.at("pattern");
    if (pattern.contains("Regex"))
      regex_ = std::make_unique<Regex>(pattern["Regex"].get<std::string>(), where + ".pattern");
    else
      literal_ = pattern.at("String").get<std::string>();
    behavior_ = parse_behavior(config.at("behavior").get<std::string>(), where);
    invert_ = config.value("invert", false);
  }

  void apply(std::vector<std::string_view>& pieces, std::vector<std::string_view>& scratch,
             TextArena&) const override {
    scratch.clear();
    std::vector<Regex::Match> matches;
    std::vector<Span> spans;
    for (std::string_view piece : pieces) {
      find_matches(piece, matches);
      spans.clear();
      size_t previous_end = 0;
      for (auto [begin, end] : matches) {
        if (previous_end != begin) spans.push_back({previous_end, begin, invert_});
        spans.push_back({begin, end, !invert_});
        previous_end = end;
      }
      if (previous_end != piece.size()) spans.push_back({previous_end, piece.size(), invert_});
      apply_behavior(behavior_, spans);
      for (const auto& span : spans)
        if (!span.flag && span.end > span.begin)
          scratch.push_back(piece.substr(span.begin, span.end - span.begin));
    }
    pieces.swap(scratch);
  }

 private:
  void find_matches(std::string_view piece, std::vector<Regex::Match>& matches) const {
    if (regex_) return regex_->find_all(piece, matches);
    matches.clear();
    if (literal_.empty()) return;
    for (size_t pos = piece.find(literal_); pos != std::string_view::npos;
         pos = piece.find(literal_, pos + literal_.size()))
      matches.emplace_back(pos, pos + literal_.size());
  }

  std::unique_ptr<Regex> regex_;
  std::string literal_;
  SplitBehavior behavior_ = SplitBehavior::Isolated;
  bool invert_ = false;
};

class ByteLevelStep : public PreTokenizerStep {
 public:
  ByteLevelStep(const nlohmann::json& config, const std::string& where)
      : add_prefix_space_(config.value("add_prefix_space", true)) {
    if (config.value("use_regex", true))
      regex_split_ = std::make_unique<SplitStep>(
          nlohmann::json{{"pattern", {{"Regex", byte_level::kGpt2Pattern}}},
                         {"behavior", "Isolated"},
                         {"invert", false}},
          where);
  }

  // The mapping to byte-level characters is skipped when the model does it (last step).
  void set_map_bytes(bool map_bytes) { map_bytes_ = map_bytes; }

  void apply(std::vector<std::string_view>& pieces, std::vector<std::string_view>& scratch,
             TextArena& arena) const override {
    if (add_prefix_space_) {
      for (auto& piece : pieces) {
        if (!piece.empty() && piece.front() != ' ') {
          arena.push_back(" " + std::string(piece));
          piece = arena.back();
        }
      }
    }
    if (regex_split_) regex_split_->apply(pieces, scratch, arena);
    if (map_bytes_) {
      for (auto& piece : pieces) {
        arena.emplace_back();
        byte_level::append_chars(arena.back(), piece);
        piece = arena.back();
      }
    }
  }

 private:
  bool add_prefix_space_;
  bool map_bytes_ = true;
  std::unique_ptr<SplitStep> regex_split_;
};

}  // namespace

PreTokenizer::PreTokenizer(const nlohmann::json& config, const std::string& where) {
  if (config.is_null()) return;
  add_steps(config, where);
  if (!steps_.empty()) {
    if (auto* last = dynamic_cast<ByteLevelStep*>(steps_.back().get())) {
      last->set_map_bytes(false);
      byte_level_last_ = true;
    }
  }
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::add_steps(const nlohmann::json& config, const std::string& where) {
  const std::string type = config.value("type", "");
  if (type == "Sequence") {
    const auto& list = config.at("pretokenizers");
    for (size_t i = 0; i < list.size(); ++i)
      add_steps(list[i], where + ".pretokenizers[" + std::to_string(i) + "]");
  } else if (type == "Split") {
    steps_.push_back(std::make_unique<SplitStep>(config, where));
  } else if (type == "ByteLevel") {
    steps_.push_back(std::make_unique<ByteLevelStep>(config, where));
  } else {
    throw Error(where + ": pre_tokenizer type \"" + type + "\" is not supported");
  }
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& words,
                         TextArena& arena) const {
  std::vector<std::string_view> pieces{text}, scratch;
  for (const auto& step : steps_) step->apply(pieces, scratch, arena);
  for (auto piece : pieces)
    if (!piece.empty()) words.push_back(piece);
}

}  // namespace dsv3
