#include "util/phase_profile.h"

#include <algorithm>
#include <atomic>
#include <mutex>

namespace dsv3::profile {

namespace {

std::atomic<bool> g_enabled{false};
std::mutex g_mutex;
std::vector<PhaseTotal> g_totals;  // guarded by g_mutex

}  // namespace

void set_enabled(bool enabled) { g_enabled.store(enabled, std::memory_order_relaxed); }

bool enabled() { return g_enabled.load(std::memory_order_relaxed); }

void reset() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_totals.clear();
}

std::vector<PhaseTotal> totals() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_totals;
}

void record(const char* name, double seconds) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = std::find_if(g_totals.begin(), g_totals.end(),
                         [&](const PhaseTotal& total) { return total.name == name; });
  if (it == g_totals.end()) it = g_totals.insert(g_totals.end(), PhaseTotal{name, 0, 0});
  it->seconds += seconds;
  it->calls += 1;
}

}  // namespace dsv3::profile
