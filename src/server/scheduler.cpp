#include "server/scheduler.h"

#include <algorithm>

#include "generate/sampler.h"
#include "generate/text_stream.h"
#include "server/request_error.h"

namespace dsv3::server {

std::vector<ChoiceUpdate> RequestStream::take(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return !updates_.empty(); });
  return std::exchange(updates_, {});
}

bool RequestStream::all_finished() const {
  std::lock_guard lock(mutex_);
  return open_choices_ == 0;
}

void RequestStream::post(ChoiceUpdate update) {
  {
    std::lock_guard lock(mutex_);
    if (update.finished && open_choices_ > 0) --open_choices_;
    updates_.push_back(std::move(update));
  }
  changed_.notify_all();
}

struct Scheduler::Pending {
  std::shared_ptr<RequestStream> stream;
  size_t choice;
  ChoiceJob job;
};

// A sequence holding a cache slot: its tokens, sampler and text.
struct Scheduler::Running {
  std::shared_ptr<RequestStream> stream;
  size_t choice;
  GenerationConfig config;
  int64_t slot;
  LatentCache* cache;
  std::vector<int32_t> history;  // prompt + generated; the cache holds a prefix of it
  Sampler sampler;
  TextStream text;
  int64_t generated = 0;
  int64_t cached_prompt_tokens = 0;
  bool done = false;

  // Tokens to feed before the next token can be sampled.
  int64_t unfed() const { return int64_t(history.size()) - cache->length(); }
};

Scheduler::Scheduler(const CausalLM& model, const Tokenizer& tokenizer, SchedulerOptions options)
    : model_(model),
      tokenizer_(tokenizer),
      options_(options),
      pool_(model, options.max_sequences, options.context) {
  if (options_.prefill_chunk <= 0) throw Error("the prefill chunk must be positive");
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() { stop(); }

std::shared_ptr<RequestStream> Scheduler::submit(std::vector<ChoiceJob> jobs) {
  auto stream = std::make_shared<RequestStream>(jobs.size());
  {
    std::lock_guard lock(mutex_);
    if (!accepting_ || stopping_)
      throw RequestError(503, "the server is shutting down", "", "server_shutting_down",
                         "server_error");
    if (int64_t(queue_.size() + jobs.size()) > options_.max_queued)
      throw RequestError(503,
                         "the server is overloaded: " + std::to_string(queue_.size()) +
                             " sequences are waiting; retry later",
                         "", "server_overloaded", "server_error");
    for (size_t i = 0; i < jobs.size(); ++i)
      queue_.push_back(std::make_unique<Pending>(Pending{stream, i, std::move(jobs[i])}));
    stats_.queued = int64_t(queue_.size());
  }
  work_.notify_one();
  return stream;
}

void Scheduler::stop_accepting() {
  std::lock_guard lock(mutex_);
  accepting_ = false;
}

bool Scheduler::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return idle_.wait_for(lock, timeout, [&] { return queue_.empty() && stats_.running == 0; });
}

void Scheduler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    accepting_ = false;
  }
  work_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void Scheduler::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      work_.wait(lock, [&] { return stopping_ || !queue_.empty() || !running_.empty(); });
      if (stopping_) {
        for (auto& pending : queue_)
          pending->stream->post({pending->choice, "", 0, 0, true, FinishReason::kCancelled, ""});
        queue_.clear();
        lock.unlock();
        for (auto& sequence : running_) finish(*sequence, FinishReason::kCancelled);
        running_.clear();
        idle_.notify_all();
        return;
      }
    }
    admit();
    for (auto& sequence : running_)
      if (sequence->stream->cancelled()) finish(*sequence, FinishReason::kCancelled);
    std::erase_if(running_, [](const auto& sequence) { return sequence->done; });
    if (!running_.empty()) step();
    std::erase_if(running_, [](const auto& sequence) { return sequence->done; });
    {
      std::lock_guard lock(mutex_);
      stats_.running = int64_t(running_.size());
      stats_.queued = int64_t(queue_.size());
      if (running_.empty() && queue_.empty()) idle_.notify_all();
    }
  }
}

// Moves queued choices into free slots, in arrival order.
void Scheduler::admit() {
  std::lock_guard lock(mutex_);
  while (!queue_.empty()) {
    Pending& pending = *queue_.front();
    if (pending.stream->cancelled()) {
      pending.stream->post({pending.choice, "", 0, 0, true, FinishReason::kCancelled, ""});
      ++stats_.cancelled;
      queue_.pop_front();
      continue;
    }
    const std::optional<int64_t> slot = pool_.acquire(pending.job.prompt);
    if (!slot) return;
    LatentCache& cache = pool_.cache(*slot);
    auto sequence = std::make_unique<Running>(
        Running{pending.stream, pending.choice, pending.job.config, *slot, &cache,
                std::move(pending.job.prompt), Sampler(pending.job.config.sampling),
                TextStream(tokenizer_, pending.job.config.stop_strings)});
    sequence->cached_prompt_tokens = cache.length();
    stats_.reused_prompt_tokens += cache.length();
    running_.push_back(std::move(sequence));
    queue_.pop_front();
  }
}

void Scheduler::finish(Running& sequence, FinishReason reason, std::string error) {
  sequence.done = true;
  if (reason == FinishReason::kCancelled) {
    std::lock_guard lock(mutex_);
    ++stats_.cancelled;
  }
  std::string rest;
  if (error.empty() && reason != FinishReason::kEos && reason != FinishReason::kStop)
    rest = sequence.text.finish();
  sequence.stream->post({sequence.choice, std::move(rest), sequence.generated,
                         sequence.cached_prompt_tokens, true, reason, std::move(error)});
  pool_.release(sequence.slot, std::span(sequence.history).first(size_t(sequence.cache->length())));
}

void Scheduler::step() {
  // Every decoding sequence feeds its last token; joining ones feed their prompt in chunks
  // within the step's prefill budget and sample once the whole prompt is in their cache.
  std::vector<SequenceInput> inputs;
  std::vector<Running*> members;
  std::vector<bool> samples;
  int64_t prefill_budget = options_.prefill_chunk;
  for (auto& sequence : running_) {
    const int64_t unfed = sequence->unfed();
    int64_t take = unfed;
    if (unfed > 1) {
      if (prefill_budget <= 0) continue;
      take = std::min(unfed, prefill_budget);
      prefill_budget -= take;
    }
    SequenceInput input{
        std::span(sequence->history).subspan(size_t(sequence->cache->length()), size_t(take)),
        sequence->cache};
    // Prompt tokens always take the expanded form, generated ones the cheaper (absorbed): a
    // token's logits then do not depend on how its prompt was cut into chunks, or on how much
    // of it a cached prefix covered, so a request samples the same text alone or among others
    // (under bf16 attention the two forms differ by bf16 rounding, see model/attention.h).
    if (sequence->generated == 0) input.attention_mode = AttentionMode::kExpanded;
    inputs.push_back(input);
    members.push_back(sequence.get());
    samples.push_back(take == unfed);
  }
  std::vector<float> logits;
  try {
    logits = model_.forward_batch(inputs, 1);
  } catch (const std::exception& error) {
    for (Running* sequence : members) finish(*sequence, FinishReason::kCancelled, error.what());
    return;
  }
  {
    std::lock_guard lock(mutex_);
    ++stats_.steps;
  }
  const int64_t vocab = model_.config().vocab_size;
  for (size_t i = 0; i < members.size(); ++i) {
    if (!samples[i]) continue;
    Running& sequence = *members[i];
    const std::span<float> row = std::span(logits).subspan(i * size_t(vocab), size_t(vocab));
    const int32_t id = sequence.sampler.sample(row, sequence.history);
    sequence.history.push_back(id);
    ++sequence.generated;
    const auto& eos = sequence.config.eos_token_ids;
    if (std::find(eos.begin(), eos.end(), id) != eos.end()) {
      ChoiceUpdate last{sequence.choice, sequence.text.finish(), 0, 0,
                        false,           FinishReason::kEos,     ""};
      sequence.stream->post(std::move(last));
      finish(sequence, FinishReason::kEos);
      continue;
    }
    std::string piece = sequence.text.push(id);
    if (!piece.empty())
      sequence.stream->post({sequence.choice, std::move(piece), sequence.generated,
                             sequence.cached_prompt_tokens, false, FinishReason::kLength, ""});
    if (sequence.text.stopped())
      finish(sequence, FinishReason::kStop);
    else if (sequence.generated >= sequence.config.max_new_tokens)
      finish(sequence, FinishReason::kLength);
    else if (sequence.cache->length() + 1 > sequence.cache->capacity())
      finish(sequence, FinishReason::kContext);
  }
}

}  // namespace dsv3::server
