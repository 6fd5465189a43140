#!/usr/bin/env bash
# `dsv3 serve` end to end: starts the real server on a free loopback port with a make-tiny
# checkpoint (real DeepSeek-V3 tokenizer and chat template, small random model) and talks to it
# over HTTP with a stdlib-only Python client: chat (plain and streamed), completions, n, stop,
# seeds, prefix reuse, batching equivalence (a request alone and among concurrent others gives
# the same text), errors and hostile input, slow clients, disconnects, graceful shutdown.
# Prints "N passed, M failed"; exits non-zero on any failure. The server is always killed.
#
# usage: bash tests/server_test.sh DSV3_BINARY [BUILD_DIR]
set -uo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: bash tests/server_test.sh DSV3_BINARY [BUILD_DIR]" >&2
  exit 2
fi
DSV3=$1
BUILD_DIR=${2:-/tmp}
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3
API_KEY=test-key

mkdir -p "$BUILD_DIR"
WORK=$(mktemp -d "$BUILD_DIR/server_test.XXXXXX") || exit 1
SERVER_PID=""
stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null
  fi
  SERVER_PID=""
}
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

if ! "$DSV3" make-tiny "$WORK/tiny" --preset tiny >"$WORK/make_tiny.log" 2>&1; then
  cat "$WORK/make_tiny.log"
  echo "0 passed, 1 failed"
  exit 1
fi

# Starts the server on a free port (--port 0) and sets PORT from its "listening" line.
start_server() {
  "$DSV3" serve -m "$WORK/tiny" --port 0 --ctx 512 --max-seqs 4 --timeout 2 --max-body 1000000 \
    --api-key "$API_KEY" "$@" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 300); do
    PORT=$(grep -o 'listening on http://[0-9.]*:[0-9]*' "$WORK/server.log" | sed 's/.*://')
    [[ -n $PORT ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
  done
  cat "$WORK/server.log"
  return 1
}

if ! start_server; then
  echo "0 passed, 1 failed (the server did not start)"
  exit 1
fi

cat >"$WORK/client.py" <<'PYTHON'
import http.client, json, socket, sys, threading, time

PORT, KEY = int(sys.argv[1]), sys.argv[2]
passed = failed = 0

def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print("PASS", name)
    else:
        failed += 1
        print("FAIL", name, detail)

def request(method, path, body=None, raw=None, key=KEY, headers=None, timeout=300):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    all_headers = {"Content-Type": "application/json"}
    if key: all_headers["Authorization"] = "Bearer " + key
    all_headers.update(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers=all_headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, payload

def post(path, body, **kw):
    status, payload = request("POST", path, body, **kw)
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, {"unparsable": payload[:200].decode("utf-8", "replace")}

def stream(path, body):
    """The data payloads of an SSE response (parsed JSON, or the string "[DONE]")."""
    status, payload = request("POST", path, dict(body, stream=True))
    events = []
    for block in payload.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return status, events

def health():
    return json.loads(request("GET", "/health", key=None)[1])

def chat(content, **kw):
    return dict({"model": "tiny", "messages": [{"role": "user", "content": content}]}, **kw)

def test(function):
    try:
        function()
    except Exception as error:  # a crash of one test is its failure, not the end of the run
        check(function.__name__, False, "raised %r" % (error,))
    return function

@test
def endpoints():
    status, payload = request("GET", "/health", key=None)
    check("GET /health is 200 without a key", status == 200 and json.loads(payload)["status"] == "ok")
    status, payload = request("GET", "/v1/models")
    models = json.loads(payload)
    check("GET /v1/models lists the model", status == 200 and models["data"][0]["id"] == "tiny", payload)

@test
def chat_completion():
    status, body = post("/v1/chat/completions", chat("Hello there", max_tokens=6, temperature=0, ignore_eos=True))
    ok = status == 200 and body["object"] == "chat.completion"
    choice = body.get("choices", [{}])[0]
    check("chat: 200 and a chat.completion", ok, body)
    check("chat: assistant message with text content",
          choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str) and choice["message"]["content"])
    check("chat: finish_reason length at max_tokens", choice["finish_reason"] == "length", choice)
    usage = body["usage"]
    check("chat: usage counts", usage["completion_tokens"] == 6 and usage["prompt_tokens"] > 3 and
          usage["total_tokens"] == usage["prompt_tokens"] + 6, usage)
    status, events = stream("/v1/chat/completions", chat("Hello there", max_tokens=6, temperature=0, ignore_eos=True,
                                                         stream_options={"include_usage": True}))
    chunks = [e for e in events if e != "[DONE]"]
    check("stream: 200 and ends with data: [DONE]", status == 200 and events and events[-1] == "[DONE]", events[-2:])
    check("stream: chunk objects", all(c["object"] == "chat.completion.chunk" for c in chunks))
    check("stream: first delta names the role", chunks[0]["choices"][0]["delta"].get("role") == "assistant")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    check("stream: same text as without streaming (greedy)", text == choice["message"]["content"],
          (text, choice["message"]["content"]))
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    check("stream: one finish_reason length", finishes == ["length"], finishes)
    check("stream: usage chunk last", chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6,
          chunks[-1])

@test
def completions():
    status, body = post("/v1/completions", {"model": "tiny", "prompt": "The capital of France is", "max_tokens": 5,
                                             "temperature": 0, "ignore_eos": True})
    check("completions: 200 and text", status == 200 and body["object"] == "text_completion" and
          isinstance(body["choices"][0]["text"], str), body)
    text = body["choices"][0]["text"]
    status, body = post("/v1/completions", {"prompt": [0, 671, 6102, 294, 8760, 344], "max_tokens": 5, "temperature": 0,
                                            "ignore_eos": True})
    check("completions: a prompt of token ids", status == 200 and body["usage"]["prompt_tokens"] == 6, body)
    status, body = post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4, "n": 2, "seed": 5,
                                            "temperature": 1.0, "ignore_eos": True})
    indices = [c["index"] for c in body.get("choices", [])]
    check("completions: n=2 gives choices 0 and 1", status == 200 and indices == [0, 1], body)
    check("completions: n=2 counts both choices' tokens", body["usage"]["completion_tokens"] == 8, body.get("usage"))
    status, body = post("/v1/completions", {"prompt": ["One", "Two"], "max_tokens": 3, "temperature": 0})
    check("completions: a list of prompts", status == 200 and len(body["choices"]) == 2, body)
    status, events = stream("/v1/completions", {"prompt": "The capital of France is", "max_tokens": 5,
                                                "temperature": 0, "ignore_eos": True})
    streamed = "".join(e["choices"][0]["text"] for e in events if e != "[DONE]")
    check("completions: streamed text equals the plain one", streamed == text and events[-1] == "[DONE]",
          (streamed, text))

@test
def seeds_and_stop():
    body = {"prompt": "Random words:", "max_tokens": 6, "temperature": 1.0, "seed": 7, "ignore_eos": True}
    first = post("/v1/completions", body)[1]["choices"][0]["text"]
    again = post("/v1/completions", body)[1]["choices"][0]["text"]
    other = post("/v1/completions", dict(body, seed=8))[1]["choices"][0]["text"]
    check("seed: the same seed gives the same text", first == again, (first, again))
    check("seed: another seed gives another text", first != other, (first, other))
    plain = post("/v1/completions", {"prompt": "Stop test", "max_tokens": 10, "temperature": 0, "ignore_eos": True})[1]
    text = plain["choices"][0]["text"]
    stop = text[len(text) // 2: len(text) // 2 + 2]
    status, body = post("/v1/completions", {"prompt": "Stop test", "max_tokens": 10, "temperature": 0,
                                            "ignore_eos": True, "stop": [stop, "\x00never"]})
    choice = body["choices"][0]
    check("stop: text cut before the stop string", choice["text"] == text[:text.index(stop)], (text, stop, choice))
    check("stop: finish_reason stop", choice["finish_reason"] == "stop", choice)

@test
def prefix_reuse():
    first_messages = [{"role": "user", "content": "Tell me a story about a lighthouse keeper."}]
    status, first = post("/v1/chat/completions", {"messages": first_messages, "max_tokens": 4, "temperature": 0})
    reply = first["choices"][0]["message"]["content"]
    messages = first_messages + [{"role": "assistant", "content": reply}, {"role": "user", "content": "And then?"}]
    status, second = post("/v1/chat/completions", {"messages": messages, "max_tokens": 4, "temperature": 0})
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    check("prefix reuse: the next turn reuses the previous prompt from the cache",
          status == 200 and cached >= first["usage"]["prompt_tokens"], (cached, first["usage"], second["usage"]))

@test
def tools_through_template():
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"celsius\": 21}"}]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    status, body = post("/v1/chat/completions", {"messages": messages, "tools": tools, "max_tokens": 3, "temperature": 0})
    check("tools: a tool-call history renders and generates", status == 200 and body["choices"][0]["message"]["role"] == "assistant", body)

@test
def batching_equivalence():
    prompts = ["Alpha beta gamma", "A long time ago in a galaxy far", "def fib(n):", "Bonjour, je", "1, 2, 3, 4,"]
    def body(i):
        return {"prompt": prompts[i], "max_tokens": 6, "temperature": 0.9, "top_k": 40, "seed": 100 + i, "ignore_eos": True}
    alone = [post("/v1/completions", body(i))[1]["choices"][0]["text"] for i in range(len(prompts))]
    alone_chat = post("/v1/chat/completions", chat("Concurrent chat", max_tokens=6, temperature=0.9, seed=3, ignore_eos=True))[1]
    steps_before = health()["steps"]
    together = [None] * len(prompts)
    together_chat = [None]
    def run(i):
        together[i] = post("/v1/completions", body(i))[1]["choices"][0]["text"]
    def run_chat():
        status, events = stream("/v1/chat/completions", chat("Concurrent chat", max_tokens=6, temperature=0.9, seed=3, ignore_eos=True))
        together_chat[0] = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e != "[DONE]" and e["choices"])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))] + [threading.Thread(target=run_chat)]
    for t in threads: t.start()
    for t in threads: t.join()
    steps = health()["steps"] - steps_before
    check("batching: each request's text alone == among concurrent others", alone == together, (alone, together))
    check("batching: the streamed chat too", together_chat[0] == alone_chat["choices"][0]["message"]["content"],
          (together_chat[0], alone_chat["choices"][0]["message"]["content"]))
    check("batching: concurrent requests shared forward passes", 0 < steps < 6 * 6, "steps=%d for 36 tokens" % steps)

@test
def errors():
    def expect(name, status_body, status, param=None, code=None):
        got_status, body = status_body
        error = body.get("error", {}) if isinstance(body, dict) else {}
        ok = got_status == status and isinstance(error.get("message"), str) and "type" in error
        if param is not None: ok = ok and error.get("param") == param
        if code is not None: ok = ok and error.get("code") == code
        check("error: " + name, ok, (got_status, body))
    def raw(data, path="/v1/chat/completions", **kw):
        status, payload = request("POST", path, raw=data, **kw)
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, {"unparsable": payload[:200]}
    expect("bad JSON", raw(b'{"messages": [}'), 400)
    expect("truncated JSON", raw(b'{"messages": [{"role": "user", "content": "hi'), 400)
    expect("not an object", raw(b'[1, 2]'), 400)
    expect("wrong type of max_tokens", post("/v1/chat/completions", chat("x", max_tokens="ten")), 400, "max_tokens")
    expect("wrong type of temperature", post("/v1/chat/completions", chat("x", temperature="hot")), 400, "temperature")
    expect("messages not an array", post("/v1/chat/completions", {"messages": "hi"}), 400, "messages")
    expect("missing messages", post("/v1/chat/completions", {"model": "tiny"}), 400, "messages")
    expect("bad role", post("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}), 400)
    expect("negative max_tokens", post("/v1/chat/completions", chat("x", max_tokens=-1)), 400, "max_tokens")
    expect("n = 0", post("/v1/chat/completions", chat("x", n=0)), 400, "n")
    expect("n too large", post("/v1/chat/completions", chat("x", n=1000)), 400, "n")
    expect("temperature out of range", post("/v1/chat/completions", chat("x", temperature=5)), 400, "temperature")
    expect("token id outside the vocabulary", post("/v1/completions", {"prompt": [1, 99999999]}), 400, "prompt")
    expect("context length exceeded", post("/v1/chat/completions", chat("x", max_tokens=100000)), 400,
           code="context_length_exceeded")
    expect("prompt longer than the context", post("/v1/completions", {"prompt": "word " * 2000}), 400,
           code="context_length_exceeded")
    expect("invalid UTF-8 in a string", raw(b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}'), 400)
    expect("deeply nested JSON", raw(b'{"messages": ' + b'[' * 100000 + b']' * 100000 + b'}'), 400)
    expect("huge body (413)", raw(b'{"prompt": "' + b'a' * 2000000 + b'"}', path="/v1/completions"), 413)
    expect("missing API key", post("/v1/chat/completions", chat("x"), key=None), 401, code="invalid_api_key")
    expect("wrong API key", post("/v1/chat/completions", chat("x"), key="nope"), 401)
    expect("unknown route", post("/v1/nothing", {}), 404)
    status, body = post("/v1/chat/completions", chat("x", max_tokens=2, some_future_field={"a": 1}, user="u1"))
    check("error: unknown fields are ignored", status == 200, body)
    # A body that ends early (Content-Length promises more): a timeout, not a hang of the server.
    sock = socket.create_connection(("127.0.0.1", PORT))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 500\r\n\r\n{\"prompt\": ")
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(10)
    try:
        sock.recv(1000)
    except OSError:
        pass
    sock.close()
    check("error: server alive after hostile input", health()["status"] == "ok")

@test
def slow_clients():
    # Slowloris: connections trickling a header byte by byte hold a connection each, but the
    # others are served; when a slow client stalls, the read timeout (2 s here) closes it.
    slow = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", PORT))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    stop = threading.Event()
    def trickle():
        while not stop.is_set():
            for sock in slow:
                try: sock.sendall(b"X")
                except OSError: pass
            time.sleep(0.5)
    trickler = threading.Thread(target=trickle)
    trickler.start()
    start = time.time()
    status, body = post("/v1/completions", {"prompt": "Fast client", "max_tokens": 2, "temperature": 0})
    elapsed = time.time() - start
    stop.set()
    trickler.join()
    check("slowloris: another client is served meanwhile", status == 200, (status, body))
    closed = 0
    for sock in slow:
        sock.settimeout(15)
        try:
            while sock.recv(4096): pass  # a 4xx response, then the close
            closed += 1
        except OSError:
            pass
        sock.close()
    check("slowloris: stalled connections are closed by the read timeout", closed == 3, "closed %d of 3" % closed)

@test
def disconnect_cancels():
    before = health()["cancelled"]
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    conn.request("POST", "/v1/chat/completions",
                 body=json.dumps(chat("Go on forever", max_tokens=400, temperature=0, ignore_eos=True, stream=True)),
                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
    response = conn.getresponse()
    response.fp.readline()  # the first bytes of the stream
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    def wait_for(condition):
        deadline = time.time() + 20
        while time.time() < deadline and not condition(health()):
            time.sleep(0.01)
    wait_for(lambda state: state["running"] == 0)
    # And a non-streamed one, closed as soon as it runs (500 tokens of the tiny model take
    # about half a second on a fast machine: a fixed wait could outlast them).
    sock = socket.create_connection(("127.0.0.1", PORT))
    body = json.dumps({"prompt": "Also forever", "max_tokens": 500, "temperature": 0, "ignore_eos": True}).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode() +
                 b"\r\n\r\n" + body)
    wait_for(lambda state: state["running"] > 0)
    sock.close()
    deadline = time.time() + 20
    state = health()
    while time.time() < deadline and (state["running"] > 0 or state["cancelled"] < before + 2):
        time.sleep(0.2)
        state = health()
    check("disconnect: both requests cancelled and their slots freed",
          state["running"] == 0 and state["cancelled"] >= before + 2, state)

print("client: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PYTHON

"$PYTHON" "$WORK/client.py" "$PORT" "$API_KEY" | tee "$WORK/client.log"
client_status=${PIPESTATUS[0]}
passed=$(grep -c '^PASS' "$WORK/client.log")
failed=$(grep -c '^FAIL' "$WORK/client.log")
[[ $client_status -ne 0 && $failed -eq 0 ]] && failed=1  # the client itself broke

# Graceful shutdown: SIGTERM while a stream runs lets it finish ([DONE]) and the server exits 0.
"$PYTHON" - "$PORT" "$API_KEY" >"$WORK/last_stream.txt" 2>&1 <<'PYTHON' &
import http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=120)
conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "Last words", "max_tokens": 12, "temperature": 0,
             "ignore_eos": True, "stream": True}),
             headers={"Content-Type": "application/json", "Authorization": "Bearer " + sys.argv[2]})
print(conn.getresponse().read().decode())
PYTHON
stream_pid=$!
sleep 1
kill -TERM "$SERVER_PID"
server_status=124
for _ in $(seq 300); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then wait "$SERVER_PID"; server_status=$?; break; fi
  sleep 0.2
done
wait "$stream_pid"
if [[ $server_status -eq 0 ]] && grep -q 'data: \[DONE\]' "$WORK/last_stream.txt"; then
  echo "PASS shutdown: SIGTERM lets the running stream finish, exit code 0"
  passed=$((passed + 1))
else
  echo "FAIL shutdown: server exit $server_status, stream: $(tail -c 300 "$WORK/last_stream.txt")"
  failed=$((failed + 1))
fi
SERVER_PID=""

if [[ $failed -ne 0 ]]; then
  echo "--- the server's log (last lines):"
  tail -n 30 "$WORK/server.log"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
