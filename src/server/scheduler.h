// Continuous batching: one thread owns the model and runs one forward pass after another over
// every running sequence. Each step, new prompts join (prefilling, in chunks, alongside the
// others' decoding) and finished or cancelled sequences leave, so requests share passes at
// token granularity. Every sequence has its own seeded Sampler and its own cache slot, and the
// kernels give each row the same numbers whatever else is in the batch, so a request's output
// is the same as when it runs alone.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "generate/generator.h"
#include "model/model.h"
#include "server/cache_pool.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::server {

// One sequence to generate: a prompt and how to generate after it.
struct ChoiceJob {
  std::vector<int32_t> prompt;
  GenerationConfig config;
};

// News about one choice of a request.
struct ChoiceUpdate {
  size_t choice = 0;                 // index into the submitted jobs
  std::string text;                  // new text (stop strings already cut)
  int64_t generated_tokens = 0;      // so far, an ending EOS included
  int64_t cached_prompt_tokens = 0;  // prompt tokens reused from the cache pool
  bool finished = false;
  FinishReason finish = FinishReason::kLength;
  std::string error;  // non-empty when generation failed
};

// The channel between a request's HTTP handler and the scheduler.
class RequestStream {
 public:
  explicit RequestStream(size_t choices) : open_choices_(choices) {}

  // The updates since the last call, waiting up to `timeout` for one; empty on timeout.
  std::vector<ChoiceUpdate> take(std::chrono::milliseconds timeout);
  // The client went away: its sequences stop at the next step and free their slots.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  // Every choice finished (its last update may still be untaken).
  bool all_finished() const;

 private:
  friend class Scheduler;
  void post(ChoiceUpdate update);

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<ChoiceUpdate> updates_;
  size_t open_choices_;
  std::atomic<bool> cancelled_ = false;
};

struct SchedulerOptions {
  int64_t max_sequences = 4;    // cache slots, i.e. sequences running at once
  int64_t context = 4096;       // positions per slot
  int64_t prefill_chunk = 512;  // prompt tokens computed per step, over all joining sequences
  int64_t max_queued = 1024;    // choices waiting for a slot before requests are refused
};

struct SchedulerStats {
  int64_t running = 0;
  int64_t queued = 0;
  int64_t steps = 0;
  int64_t reused_prompt_tokens = 0;
  int64_t cancelled = 0;  // sequences stopped because their client went away
};

class Scheduler {
 public:
  Scheduler(const CausalLM& model, const Tokenizer& tokenizer, SchedulerOptions options);
  ~Scheduler();  // stops (cancelling what still runs)

  // Queues the choices of one request; throws RequestError 503 when the queue is full or the
  // server is shutting down.
  std::shared_ptr<RequestStream> submit(std::vector<ChoiceJob> jobs);

  // Refuses new requests from now on; the running and queued ones continue.
  void stop_accepting();
  // Waits until nothing runs or is queued, at most `timeout`; true when idle.
  bool wait_idle(std::chrono::milliseconds timeout);
  // Cancels everything and ends the scheduler thread.
  void stop();

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Pending;
  struct Running;
  void run();
  void admit();
  void step();
  void finish(Running& sequence, FinishReason reason, std::string error = "");

  const CausalLM& model_;
  const Tokenizer& tokenizer_;
  SchedulerOptions options_;
  CachePool pool_;

  mutable std::mutex mutex_;  // guards queue_, accepting_, stopping_, stats_
  std::condition_variable work_;
  std::condition_variable idle_;
  std::deque<std::unique_ptr<Pending>> queue_;
  bool accepting_ = true;
  bool stopping_ = false;
  SchedulerStats stats_;

  std::vector<std::unique_ptr<Running>> running_;  // the scheduler thread's own
  std::thread thread_;
};

}  // namespace dsv3::server
