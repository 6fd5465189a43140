// The latent caches of the server: `slots` caches allocated once at start. A finished
// sequence leaves its cache (and the tokens it holds) in its slot, so a new prompt that starts
// the same way (a chat's next turn, the same system prompt) resumes from the longest shared
// prefix instead of computing it again. When no free slot shares anything, the least recently
// used one is overwritten.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cache/latent_cache.h"
#include "model/model.h"

namespace dsv3::server {

class CachePool {
 public:
  CachePool(const CausalLM& model, int64_t slots, int64_t context);

  // Takes a free slot for `prompt`, its cache rewound to the longest prefix it shares with
  // `prompt` (leaving at least the last prompt token to compute, whose logits are needed).
  // nullopt when every slot is busy.
  std::optional<int64_t> acquire(std::span<const int32_t> prompt);
  LatentCache& cache(int64_t slot) { return slots_[slot].cache; }
  // Gives the slot back; `tokens` are the ids whose positions its cache holds (their count must
  // equal the cache length), kept for later prefix matches.
  void release(int64_t slot, std::span<const int32_t> tokens);

  int64_t size() const { return int64_t(slots_.size()); }
  int64_t free_slots() const;

 private:
  struct Slot {
    LatentCache cache;
    std::vector<int32_t> tokens;  // what the cache holds
    bool busy = false;
    uint64_t last_used = 0;
  };
  std::vector<Slot> slots_;
  uint64_t clock_ = 0;
};

}  // namespace dsv3::server
