#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace dsv3 {

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer.impl_), skip_special_tokens_(skip_special_tokens) {}

std::string StreamingDecoder::push(int32_t id) {
  const Tokenizer::Impl& t = *tokenizer_;
  t.check_known(id);
  if (skip_special_tokens_ && t.is_special(id)) return "";
  if (t.join_with_spaces && !first_token_) pending_bytes_ += ' ';
  first_token_ = false;
  pending_bytes_ += t.bytes_of_id[id];
  // Decoding is left to right and a finished character never depends on later bytes, so
  // everything up to an unfinished tail can go out now, exactly as decode() would print it.
  std::string text;
  const size_t consumed = utf8::append_lossy(text, pending_bytes_, /*hold_incomplete_tail=*/true);
  pending_bytes_.erase(0, consumed);
  return text;
}

std::string StreamingDecoder::finish() {
  std::string text = utf8::decode_lossy(pending_bytes_);
  pending_bytes_.clear();
  return text;
}

}  // namespace dsv3
