// A compiled Oniguruma regular expression: the engine Rust `tokenizers` uses (via the onig
// crate, Ruby syntax, UTF-8), so `\p{L}`, `\p{N}`, `(?!\S)` etc. mean exactly what they mean
// there.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv3 {

class Regex {
 public:
  // Throws dsv3::Error naming `where` when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  using Match = std::pair<size_t, size_t>;  // [begin, end) byte offsets
  // All matches in `text` (valid UTF-8), left to right, as the onig crate's find_iter yields
  // them: an empty match right where the previous match ended is skipped.
  void find_all(std::string_view text, std::vector<Match>& matches) const;
  // Whether the pattern matches at the very start of `text`.
  bool matches_at_start(std::string_view text) const;

 private:
  void* regex_;  // regex_t*, kept opaque so oniguruma.h stays out of the headers
  // For a pattern that is one character class with a quantifier of at least one (such as
  // \p{N}{1,3}), the ASCII characters a match may start with: the search then skips other
  // ASCII text itself instead of running the matcher at every position (the same matches,
  // several times faster on English text).
  bool has_ascii_start_filter_ = false;
  std::array<bool, 128> ascii_can_start_{};
};

}  // namespace dsv3
