#include "server/cache_pool.h"

#include <algorithm>

#include "util/error.h"

namespace dsv3::server {

CachePool::CachePool(const CausalLM& model, int64_t slots, int64_t context) {
  if (slots <= 0) throw Error("the number of sequences must be positive");
  slots_.reserve(size_t(slots));
  for (int64_t i = 0; i < slots; ++i)
    slots_.push_back(Slot{model.new_cache(context), {}, false, 0});
}

std::optional<int64_t> CachePool::acquire(std::span<const int32_t> prompt) {
  if (prompt.empty()) throw Error("cache pool: an empty prompt");
  std::optional<int64_t> best;
  size_t best_shared = 0;
  for (int64_t i = 0; i < size(); ++i) {
    const Slot& slot = slots_[i];
    if (slot.busy) continue;
    const size_t limit = std::min(slot.tokens.size(), prompt.size() - 1);
    size_t shared = 0;
    while (shared < limit && slot.tokens[shared] == prompt[shared]) ++shared;
    // More shared tokens win; among equals the least recently used (the one to lose).
    if (!best || shared > best_shared ||
        (shared == best_shared && slot.last_used < slots_[*best].last_used)) {
      best = i;
      best_shared = shared;
    }
  }
  if (!best) return std::nullopt;
  Slot& slot = slots_[*best];
  slot.busy = true;
  slot.last_used = ++clock_;
  slot.cache.truncate(int64_t(best_shared));
  slot.tokens.resize(best_shared);
  return best;
}

void CachePool::release(int64_t slot_index, std::span<const int32_t> tokens) {
  Slot& slot = slots_[slot_index];
  if (int64_t(tokens.size()) != slot.cache.length())
    throw Error("cache pool: " + std::to_string(tokens.size()) + " tokens for a cache of " +
                std::to_string(slot.cache.length()) + " positions");
  slot.tokens.assign(tokens.begin(), tokens.end());
  slot.busy = false;
  slot.last_used = ++clock_;
}

int64_t CachePool::free_slots() const {
  return std::count_if(slots_.begin(), slots_.end(), [](const Slot& slot) { return !slot.busy; });
}

}  // namespace dsv3::server
