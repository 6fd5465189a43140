// Text in and out for the library API: the tokenizer, chat templates and generation (sampling,
// streaming, EOS and stop strings), re-exported from the engine.
//
//   auto lm = dsv3::api::CausalLM::from_pretrained(dir);
//   auto tokenizer = dsv3::api::Tokenizer::from_dir(dir);
//   dsv3::api::Generator generator(lm.engine(), &tokenizer);
//   auto cache = lm.engine().new_cache(1024);
//   auto config = dsv3::api::GenerationConfig::from_model_dir(dir, lm.config());
//   auto result = generator.generate(tokenizer.encode("Hello", true), cache, config);
#pragma once

#include "generate/chat_prompt.h"
#include "generate/generator.h"
#include "generate/sampler.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::api {

using dsv3::ChatPrompt;
using dsv3::FinishReason;
using dsv3::GenerationConfig;
using dsv3::GenerationResult;
using dsv3::Generator;
using dsv3::SamplingParams;
using dsv3::StreamingDecoder;
using dsv3::Tokenizer;

}  // namespace dsv3::api
