// The HTTP front of the server (cpp-httplib): routes, API-key check, body size and
// read/write timeouts, and the glue from a request to the scheduler and back as JSON or
// Server-Sent Events. A client that goes away cancels its request.
//
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /health
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "server/completion_request.h"
#include "server/scheduler.h"

namespace dsv3::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (see HttpServer::port())
  std::string api_key;     // "": no authentication
  std::string model_name;  // what /v1/models lists and responses name
  size_t max_body_bytes = 4 << 20;
  int timeout_seconds = 10;  // per read and write of a connection (slow clients)
  int threads = 64;          // connections served at once
};

class HttpServer {
 public:
  HttpServer(Scheduler& scheduler, const RequestParser& parser, HttpOptions options);
  ~HttpServer();

  // Binds the socket; throws dsv3::Error when it cannot.
  void bind();
  int port() const;
  // Serves until stop() (call from another thread).
  void serve();
  // Waits (at most `timeout`) for the responses being sent to finish, then stops serving.
  void stop(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv3::server
