#include "tokenizer/regex.h"

#include <oniguruma.h>

#include <memory>
#include <mutex>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace dsv3 {
namespace {

void initialize_oniguruma_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

struct RegionDeleter {
  void operator()(OnigRegion* region) const { onig_region_free(region, 1); }
};
using RegionPtr = std::unique_ptr<OnigRegion, RegionDeleter>;

const OnigUChar* bytes_of(std::string_view text) {
  return reinterpret_cast<const OnigUChar*>(text.data());
}

regex_t* compile(const std::string& pattern, const std::string& where) {
  initialize_oniguruma_once();
  regex_t* compiled = nullptr;
  OnigErrorInfo error_info;
  const auto* begin = reinterpret_cast<const OnigUChar*>(pattern.data());
  int status = onig_new(&compiled, begin, begin + pattern.size(), ONIG_OPTION_NONE,
                        ONIG_ENCODING_UTF8, ONIG_SYNTAX_RUBY, &error_info);
  if (status != ONIG_NORMAL) {
    OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(message, status, &error_info);
    throw Error(where + ": bad regex /" + pattern + "/: " + reinterpret_cast<char*>(message));
  }
  return compiled;
}

// Length of the character-class atom at the start of `pattern` ([...], \p{..}, \P{..}, \d,
// \s, \w and their negations), or 0 when the pattern does not start with one.
size_t class_atom_length(const std::string& pattern) {
  if (pattern.size() >= 2 && pattern[0] == '\\') {
    const char kind = pattern[1];
    if (kind == 'p' || kind == 'P') {
      if (pattern.size() < 4 || pattern[2] != '{') return 0;
      const size_t close = pattern.find('}', 3);
      return close == std::string::npos ? 0 : close + 1;
    }
    return std::string_view("dDsSwWhH").find(kind) != std::string_view::npos ? 2 : 0;
  }
  if (pattern.empty() || pattern[0] != '[') return 0;
  int depth = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      ++i;  // escaped character
    } else if (c == '[') {
      ++depth;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') ++i;
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') ++i;  // leading ']' is literal
    } else if (c == ']' && --depth == 0) {
      return i + 1;
    }
  }
  return 0;
}

// Whether `rest` is a quantifier that demands at least one repetition: "", "+", "{m}",
// "{m,}", "{m,n}" with m >= 1, optionally lazy ("?") or possessive ("+").
bool is_quantifier_of_at_least_one(std::string_view rest) {
  if (!rest.empty() && (rest.back() == '?' || (rest.back() == '+' && rest.size() > 1)))
    rest.remove_suffix(1);
  if (rest.empty() || rest == "+") return true;
  if (rest.size() < 3 || rest.front() != '{' || rest.back() != '}') return false;
  const std::string_view inside = rest.substr(1, rest.size() - 2);
  const std::string_view minimum = inside.substr(0, inside.find(','));
  if (minimum.empty() || minimum.find_first_not_of("0123456789") != std::string_view::npos)
    return false;
  if (inside.find_first_not_of("0123456789,") != std::string_view::npos) return false;
  return minimum.find_first_not_of('0') != std::string_view::npos;
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where)
    : regex_(compile(pattern, where)) {
  const size_t atom_length = class_atom_length(pattern);
  if (atom_length == 0 ||
      !is_quantifier_of_at_least_one(std::string_view(pattern).substr(atom_length)))
    return;
  // Every match starts with a character of the class: ask Oniguruma which ASCII ones those are.
  regex_t* atom = compile(pattern.substr(0, atom_length), where);
  for (int byte = 0; byte < 128; ++byte) {
    const auto character = static_cast<OnigUChar>(byte);
    ascii_can_start_[byte] =
        onig_match(atom, &character, &character + 1, &character, nullptr, ONIG_OPTION_NONE) == 1;
  }
  onig_free(atom);
  has_ascii_start_filter_ = true;
}

Regex::~Regex() { onig_free(static_cast<regex_t*>(regex_)); }

void Regex::find_all(std::string_view text, std::vector<Match>& matches) const {
  matches.clear();
  auto* regex = static_cast<regex_t*>(regex_);
  RegionPtr region(onig_region_new());
  const OnigUChar* start = bytes_of(text);
  const OnigUChar* end = start + text.size();
  size_t search_from = 0;
  bool have_previous = false;
  size_t previous_end = 0;
  while (search_from <= text.size()) {
    if (has_ascii_start_filter_) {
      while (search_from < text.size()) {
        const auto byte = static_cast<unsigned char>(text[search_from]);
        if (byte >= 0x80 || ascii_can_start_[byte]) break;
        ++search_from;
      }
      if (search_from == text.size()) break;  // the class needs at least one character
    }
    onig_region_clear(region.get());
    int found =
        onig_search(regex, start, end, start + search_from, end, region.get(), ONIG_OPTION_NONE);
    if (found == ONIG_MISMATCH) break;
    if (found < 0)
      throw Error("regex search failed (oniguruma status " + std::to_string(found) + ")");
    const auto match_begin = static_cast<size_t>(region->beg[0]);
    const auto match_end = static_cast<size_t>(region->end[0]);
    if (match_begin == match_end && have_previous && previous_end == match_end) {
      // Step over one character so an empty match cannot repeat forever.
      search_from += search_from < text.size()
                         ? utf8::sequence_length(static_cast<unsigned char>(text[search_from]))
                         : 1;
      continue;
    }
    matches.emplace_back(match_begin, match_end);
    have_previous = true;
    previous_end = match_end;
    search_from = match_end;
  }
}

bool Regex::matches_at_start(std::string_view text) const {
  auto* regex = static_cast<regex_t*>(regex_);
  const OnigUChar* start = bytes_of(text);
  int length = onig_match(regex, start, start + text.size(), start, nullptr, ONIG_OPTION_NONE);
  return length >= 0;
}

}  // namespace dsv3
