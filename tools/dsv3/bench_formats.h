// `dsv3 bench -m A -m B ...`: the same measurements on several checkpoints (typically one model
// in several weight formats), one row per model with its decode speed relative to the first.
#pragma once

#include "args.h"

namespace dsv3::cli {

int run_bench_models(const Args& args);

}  // namespace dsv3::cli
