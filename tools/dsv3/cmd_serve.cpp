// dsv3 serve -m DIR [--host 127.0.0.1] [--port 8080] [--ctx N] [--max-seqs N] [--api-key KEY]
//               [--threads T] [--activations P] [--timeout S] [--max-body BYTES] [--model-name NAME] [sampling flags]
// An OpenAI-compatible HTTP server with continuous batching (src/server/).
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "args.h"
#include "commands.h"
#include "generate/chat_prompt.h"
#include "model/model.h"
#include "sampling_flags.h"
#include "server/completion_request.h"
#include "server/http_server.h"
#include "server/scheduler.h"
#include "util/error.h"

namespace dsv3::cli {

namespace {

constexpr auto kDrainTimeout = std::chrono::seconds(30);

void print_serve_usage() {
  std::fprintf(
      stderr,
      "usage: dsv3 serve -m DIR [--host 127.0.0.1] [--port 8080] [--ctx N] [--max-seqs N]\n"
      "         [--api-key KEY] [--threads T] [--activations f32|bf16|auto] [--attention-precision f32|bf16] [--timeout SECONDS]\n"
      "         [--max-body BYTES]"
      " [--http-threads N] [--prefill-chunk N] [--model-name NAME] [-n "
      "DEFAULT_MAX_TOKENS]\n"
      "         [--temp T] [--top-p P] [--top-k K] [--stop STR] (defaults for requests)\n"
      "--port 0 picks a free port. SIGINT/SIGTERM stop accepting requests, let the running\n"
      "ones finish (up to 30 s), then exit.\n");
}

}  // namespace

int run_serve(const CommandArgs& argv) {
  auto value_flags = kGenerationFlags;
  value_flags.insert({"--host", "--port", "--max-seqs", "--api-key", "--timeout", "--max-body",
                      "--http-threads", "--prefill-chunk", "--model-name"});
  Args args(argv, value_flags, {"--help"}, kGenerationAliases);
  if (args.has("--help")) {
    print_serve_usage();
    return 0;
  }
  const std::string dir = args.require("--model");
  auto positive = [&](const char* flag, long long fallback, long long max) {
    const long long value = args.get_int(flag, fallback);
    if (value <= 0 || value > max)
      throw Error(std::string(flag) + " must be in [1, " + std::to_string(max) + "], got " +
                  std::to_string(value));
    return value;
  };
  const long long port = args.get_int("--port", 8080);
  if (port < 0 || port > 65535) throw Error("--port must be in [0, 65535]");

  // Signals are taken by one thread with sigwait: blocked here, before any thread starts, so
  // every thread inherits the mask. SIGPIPE (a client gone mid-write) must not kill us.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  apply_thread_flag(args);  // starts the kernels' threads: after the mask, so they inherit it
  apply_activation_flag(args);

  const CausalLM model(Model::from_pretrained(dir));
  if (!std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json"))
    throw Error(dir + ": the server needs tokenizer.json");
  const Tokenizer tokenizer = Tokenizer::from_dir(dir);
  std::optional<ChatPrompt> chat_prompt;
  if (!tokenizer.chat_template().empty())
    chat_prompt.emplace(tokenizer, dir);
  else
    std::fprintf(stderr, "dsv3 serve: no chat template: only /v1/completions will work\n");

  GenerationConfig defaults = generation_config_from_flags(args, dir, model.config());
  server::RequestLimits limits;
  limits.context = context_from_flags(args, model.config());
  limits.vocab_size = model.config().vocab_size;
  if (args.has("--max-new-tokens")) limits.default_max_tokens = defaults.max_new_tokens;

  server::SchedulerOptions scheduler_options;
  scheduler_options.max_sequences = positive("--max-seqs", 4, 1024);
  scheduler_options.context = limits.context;
  scheduler_options.prefill_chunk = positive("--prefill-chunk", 512, 1 << 20);
  const double cache_gib = double(scheduler_options.max_sequences) * double(limits.context) *
                           double(model.new_cache(1).bytes_per_token()) / double(1 << 30);
  std::fprintf(stderr, "dsv3 serve: %lld sequences x %lld positions of cache (%.2f GiB)\n",
               (long long)scheduler_options.max_sequences, (long long)limits.context, cache_gib);

  server::Scheduler scheduler(model, tokenizer, scheduler_options);
  const server::RequestParser parser(tokenizer, chat_prompt ? &*chat_prompt : nullptr, defaults,
                                     limits);
  server::HttpOptions http_options;
  http_options.host = args.get("--host", "127.0.0.1");
  http_options.port = int(port);
  http_options.api_key = args.get("--api-key");
  http_options.model_name =
      args.get("--model-name", std::filesystem::path(dir).filename().string());
  if (http_options.model_name.empty())
    http_options.model_name = std::filesystem::path(dir).parent_path().filename().string();
  http_options.max_body_bytes = size_t(positive("--max-body", 4 << 20, 1ll << 32));
  http_options.timeout_seconds = int(positive("--timeout", 10, 3600));
  http_options.threads = int(positive("--http-threads", 64, 4096));
  server::HttpServer http(scheduler, parser, http_options);
  http.bind();
  std::fprintf(stderr, "dsv3 serve: model %s listening on http://%s:%d\n",
               http_options.model_name.c_str(), http_options.host.c_str(), http.port());

  std::atomic<bool> served = false;
  std::thread signal_thread([&] {
    int received = 0;
    sigwait(&stop_signals, &received);
    if (served) return;  // serve() ended on its own; main woke us
    std::fprintf(stderr, "dsv3 serve: %s: finishing running requests\n",
                 received == SIGINT ? "SIGINT" : "SIGTERM");
    scheduler.stop_accepting();
    if (!scheduler.wait_idle(kDrainTimeout))
      std::fprintf(stderr, "dsv3 serve: drain timed out, cancelling\n");
    scheduler.stop();
    http.stop(std::chrono::seconds(5));
  });
  http.serve();
  served = true;
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  scheduler.stop();
  std::fprintf(stderr, "dsv3 serve: stopped\n");
  return 0;
}

}  // namespace dsv3::cli
