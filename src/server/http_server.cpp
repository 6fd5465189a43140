#include "server/http_server.h"

#include <httplib.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <random>
#include <thread>

#include "server/completion_response.h"
#include "server/json_body.h"
#include "server/openai_format.h"
#include "server/request_error.h"

namespace dsv3::server {

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(50);

void send_json(httplib::Response& response, int status, const Json& body) {
  response.status = status;
  response.set_content(dump_json(body), "application/json");
}

void send_error(httplib::Response& response, const RequestError& error) {
  send_json(response, error.status(), error_json(error));
}

const char* error_type_for(int status) {
  if (status == 401) return "authentication_error";
  if (status == 404) return "not_found_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

}  // namespace

struct HttpServer::Impl {
  Scheduler& scheduler;
  const RequestParser& parser;
  HttpOptions options;
  httplib::Server http;
  int bound_port = 0;
  int64_t started = std::time(nullptr);
  std::atomic<int64_t> open_responses = 0;  // responses still being sent
  std::atomic<uint64_t> request_counter = 0;
  uint64_t id_salt = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();

  Impl(Scheduler& scheduler, const RequestParser& parser, HttpOptions options)
      : scheduler(scheduler), parser(parser), options(std::move(options)) {
    const int threads = this->options.threads;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
    http.set_payload_max_length(this->options.max_body_bytes);
    http.set_read_timeout(this->options.timeout_seconds, 0);
    http.set_write_timeout(this->options.timeout_seconds, 0);
    http.set_keep_alive_timeout(std::min(5, this->options.timeout_seconds));
    http.set_tcp_nodelay(true);  // stream chunks go out as they are written

    http.set_pre_routing_handler(
        [this](const httplib::Request& request, httplib::Response& response) {
          return authorized(request, response) ? httplib::Server::HandlerResponse::Unhandled
                                               : httplib::Server::HandlerResponse::Handled;
        });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& response) {
      const SchedulerStats stats = this->scheduler.stats();
      send_json(response, 200,
                Json{{"status", "ok"},
                     {"running", stats.running},
                     {"queued", stats.queued},
                     {"steps", stats.steps},
                     {"reused_prompt_tokens", stats.reused_prompt_tokens},
                     {"cancelled", stats.cancelled}});
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& response) {
      send_json(response, 200,
                model_list_json(this->options.model_name, started, this->parser.limits().context));
    });
    http.Post("/v1/chat/completions",
              [this](const httplib::Request& request, httplib::Response& response) {
                complete(Endpoint::kChat, request, response);
              });
    http.Post("/v1/completions",
              [this](const httplib::Request& request, httplib::Response& response) {
                complete(Endpoint::kCompletion, request, response);
              });
    // Errors httplib answers itself (no route, body too large, bad request line) get the
    // OpenAI error body too.
    http.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
      if (!response.body.empty() || response.is_chunked_content_provider_) return;
      std::string message =
          response.status == 404   ? "Unknown request URL: " + request.method + " " + request.path
          : response.status == 413 ? "the request body is too large"
                                   : "HTTP error " + std::to_string(response.status);
      send_json(response, response.status, error_json(message, error_type_for(response.status)));
    });
    http.set_exception_handler(
        [](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
          std::string message = "internal error";
          try {
            if (error) std::rethrow_exception(error);
          } catch (const std::exception& exception) {
            message = exception.what();
          } catch (...) {
          }
          send_json(response, 500, error_json(message, "server_error"));
        });
  }

  bool authorized(const httplib::Request& request, httplib::Response& response) const {
    if (options.api_key.empty() || request.path == "/health") return true;
    if (request.get_header_value("Authorization") == "Bearer " + options.api_key) return true;
    send_error(response,
               RequestError(401, "Incorrect or missing API key: send \"Authorization: Bearer KEY\"",
                            "", "invalid_api_key", "invalid_request_error"));
    return false;
  }

  ResponseHeader new_header(Endpoint endpoint) {
    char id[40];
    std::snprintf(id, sizeof id, "%s-%016llx%08llx",
                  endpoint == Endpoint::kChat ? "chatcmpl" : "cmpl", (unsigned long long)id_salt,
                  (unsigned long long)++request_counter);
    return {id, int64_t(std::time(nullptr)), options.model_name};
  }

  void complete(Endpoint endpoint, const httplib::Request& request, httplib::Response& response) {
    std::shared_ptr<RequestStream> stream;
    std::shared_ptr<CompletionResponse> writer;
    try {
      const CompletionRequest parsed = parser.parse(endpoint, parse_json_body(request.body));
      std::vector<ChoiceJob> jobs;
      for (size_t i = 0; i < parsed.choices.size(); ++i)
        jobs.push_back({parsed.prompts[i / size_t(parsed.n)], parsed.choices[i]});
      writer = std::make_shared<CompletionResponse>(parsed, new_header(endpoint));
      stream = scheduler.submit(std::move(jobs));
      // Even a non-streamed answer is sent through a content provider: it is polled while
      // waiting, and httplib checks between polls that the client is still there.
      ++open_responses;
      response.set_chunked_content_provider(
          parsed.stream ? "text/event-stream" : "application/json",
          [stream, writer](size_t, httplib::DataSink& sink) {
            // A client that closed its end is gone (is_writable peeks for the EOF).
            if (!sink.is_writable()) return false;
            const std::string bytes = writer->advance(stream->take(kPollInterval));
            if (!bytes.empty() && !sink.write(bytes.data(), bytes.size())) return false;
            if (writer->complete()) sink.done();
            return true;
          },
          [this, stream](bool) {
            stream->cancel();  // a no-op when it finished; otherwise the client went away
            --open_responses;
          });
      if (parsed.stream) response.set_header("Cache-Control", "no-cache");
    } catch (const RequestError& error) {
      send_error(response, error);
    }
  }
};

HttpServer::HttpServer(Scheduler& scheduler, const RequestParser& parser, HttpOptions options)
    : impl_(std::make_unique<Impl>(scheduler, parser, std::move(options))) {}

HttpServer::~HttpServer() = default;

void HttpServer::bind() {
  const std::string& host = impl_->options.host;
  if (impl_->options.port == 0) {
    impl_->bound_port = impl_->http.bind_to_any_port(host);
    if (impl_->bound_port < 0) throw Error("cannot listen on " + host + " (any port)");
  } else {
    if (!impl_->http.bind_to_port(host, impl_->options.port))
      throw Error("cannot listen on " + host + ":" + std::to_string(impl_->options.port));
    impl_->bound_port = impl_->options.port;
  }
}

int HttpServer::port() const { return impl_->bound_port; }

void HttpServer::serve() { impl_->http.listen_after_bind(); }

void HttpServer::stop(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (impl_->open_responses > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  impl_->http.stop();
}

}  // namespace dsv3::server
