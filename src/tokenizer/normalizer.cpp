#include "tokenizer/normalizer.h"

#include <nlohmann/json.hpp>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace dsv3 {
namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  void normalize(std::string& text) const override {
    for (const auto& step : steps_) step->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void normalize(std::string& text) const override {
    std::vector<Regex::Match> matches;
    if (regex_) {
      regex_->find_all(text, matches);
    } else if (!literal_.empty()) {
      for (size_t pos = text.find(literal_); pos != std::string::npos;
           pos = text.find(literal_, pos + literal_.size()))
        matches.emplace_back(pos, pos + literal_.size());
    }
    if (matches.empty()) return;
    std::string replaced;
    size_t copied = 0;
    for (auto [begin, end] : matches) {
      replaced.append(text, copied, begin - copied);
      replaced += content_;
      copied = end;
    }
    replaced.append(text, copied);
    text = std::move(replaced);
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end && utf8::is_white_space(utf8::decode_at(text, begin)))
        begin += utf8::sequence_length(static_cast<unsigned char>(text[begin]));
    }
    if (right_) {
      while (end > begin) {
        size_t last = end - 1;
        while (last > begin && (static_cast<unsigned char>(text[last]) & 0xC0) == 0x80) --last;
        if (!utf8::is_white_space(utf8::decode_at(text, last))) break;
        end = last;
      }
    }
    text = text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config,
                                            const std::string& where) {
  if (config.is_null()) return nullptr;
  const std::string type = config.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    const auto& list = config.at("normalizers");
    for (size_t i = 0; i < list.size(); ++i) {
      auto step = make_normalizer(list[i], where + ".normalizers[" + std::to_string(i) + "]");
      if (step) steps.push_back(std::move(step));
    }
    if (steps.empty()) return nullptr;
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(config.at("prepend"));
  if (type == "Replace") {
    const auto& pattern = config.at("pattern");
    const std::string content = config.at("content");
    if (pattern.contains("Regex"))
      return std::make_unique<ReplaceNormalizer>(
          "", std::make_unique<Regex>(pattern["Regex"].get<std::string>(), where), content);
    return std::make_unique<ReplaceNormalizer>(pattern.at("String").get<std::string>(), nullptr,
                                               content);
  }
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(config.value("strip_left", true),
                                             config.value("strip_right", true));
  throw Error(where + ": normalizer type \"" + type + "\" is not supported");
}

}  // namespace dsv3
