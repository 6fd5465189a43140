// Wall time per named phase of the forward pass ("moe.experts", "attention.scores", ...), for
// `dsv3 bench --profile`: where a prefill or a decode step spends its time. Off by default, and
// then a phase costs one relaxed atomic load. Phases are timed on the thread that runs the
// model (the pool's work inside a phase counts to it); several threads may record at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dsv3::profile {

void set_enabled(bool enabled);
bool enabled();
// Forgets every total so far.
void reset();

struct PhaseTotal {
  std::string name;
  double seconds = 0;
  int64_t calls = 0;
};
// The totals since the last reset, in the order the phases were first seen.
std::vector<PhaseTotal> totals();

// Adds `seconds` to phase `name` (a string literal: kept by pointer).
void record(const char* name, double seconds);

// Times from construction (or the last next()) to next() or destruction, when profiling is on.
class Phase {
 public:
  explicit Phase(const char* name) { start(name); }
  ~Phase() { stop(); }
  Phase(const Phase&) = delete;
  Phase& operator=(const Phase&) = delete;

  // Ends the current phase and starts `name`.
  void next(const char* name) {
    stop();
    start(name);
  }
  void stop() {
    if (name_ == nullptr) return;
    record(name_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    name_ = nullptr;
  }

 private:
  void start(const char* name) {
    name_ = enabled() ? name : nullptr;
    if (name_ != nullptr) start_ = std::chrono::steady_clock::now();
  }
  const char* name_ = nullptr;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace dsv3::profile
