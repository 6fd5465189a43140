// The dsv3 library API in one include: the classes of transformers' DeepSeek-V3 documentation
// (Config, Model, CausalLM, SequenceClassifier) with their forward inputs and outputs, the
// cache, the losses, and text generation.
#pragma once

#include "api/cache.h"
#include "api/causal_lm.h"
#include "api/config.h"
#include "api/forward.h"
#include "api/generation.h"
#include "api/loss.h"
#include "api/model.h"
#include "api/sequence_classifier.h"
#include "api/tensor.h"
