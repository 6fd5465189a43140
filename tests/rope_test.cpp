// Rope's rotations: the table of positions computed once gives bitwise what the formula gives,
// inside it and past it, for each scaling; dynamic NTK past max_position_embeddings still takes
// its own frequencies.
#include "model/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "io/random_checkpoint.h"

namespace dsv3 {
namespace {

// transformers' rotation of `position` by the rope's (static) frequencies, as Rope computes it.
void expect_formula(const Rope& rope, int64_t position, const std::string& label) {
  const Rope::Rotation rotation = rope.rotation(position, position + 1);
  const std::vector<double>& inv_freq = rope.inv_freq();
  ASSERT_EQ(rotation.cos.size(), inv_freq.size());
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float angle = float(inv_freq[i]) * float(position);
    EXPECT_EQ(rotation.cos[i], float(std::cos(double(angle)) * rope.attention_factor()))
        << label << " position " << position << " pair " << i;
    EXPECT_EQ(rotation.sin[i], float(std::sin(double(angle)) * rope.attention_factor()))
        << label << " position " << position << " pair " << i;
  }
}

TEST(Rope, TabledRotationsAreTheFormulas) {
  for (const char* preset : {"tiny", "tiny-yarn"}) {
    Config config = preset_config(preset);
    config.max_position_embeddings = 20000;  // past the table's 16 K positions
    const Rope rope(config);
    for (int64_t position : {0, 1, 7, 511, 4095, 16383, 16384, 19999})
      expect_formula(rope, position, preset);
  }
}

TEST(Rope, DynamicScalingPastTheContextTakesItsOwnFrequencies) {
  Config config = preset_config("tiny");
  config.max_position_embeddings = 64;
  RopeScaling dynamic;
  dynamic.type = "dynamic";
  dynamic.factor = 2.0;
  config.rope_scaling = dynamic;
  const Rope rope(config);
  for (int64_t position : {0, 5, 63}) expect_formula(rope, position, "dynamic");
  // A pass of 100 positions: the base grows, so position 50 rotates otherwise than alone.
  const Rope::Rotation within = rope.rotation(50, 64), beyond = rope.rotation(50, 100);
  EXPECT_NE(within.cos, beyond.cos);
}

}  // namespace
}  // namespace dsv3
