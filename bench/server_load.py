#!/usr/bin/env python3
"""Load test of `dsv3 serve` (loopback only, bounded in time).

Runs phases of C concurrent clients, each sending R completion requests one after another, and
reports requests/s and generated tokens/s per phase, so 1 client vs many shows what continuous
batching buys. Every response is checked: status 200, one choice, the requested number of
tokens, and the same text as the 1-client phase gave for the same prompt and seed (a mixed-up
or batch-dependent response fails the run).

usage: /usr/bin/python3 bench/server_load.py --port PORT [--key KEY] [--clients 1,8,32]
           [--requests 20] [--max-tokens 8] [--time-limit 300]
  or   /usr/bin/python3 bench/server_load.py --dsv3 build/dsv3 --model DIR [...] to start the
       server itself (on a free loopback port, --max-seqs from --server-seqs) and stop it after.
"""
import argparse, http.client, json, os, re, signal, subprocess, sys, threading, time

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int)
    parser.add_argument("--key", default="")
    parser.add_argument("--dsv3", help="start this dsv3 binary's server")
    parser.add_argument("--model", help="model directory for --dsv3")
    parser.add_argument("--server-seqs", type=int, default=16, help="--max-seqs of a started server")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=16, help="distinct prompts (and seeds)")
    parser.add_argument("--time-limit", type=float, default=300, help="seconds per phase before clients stop")
    return parser.parse_args()

def start_server(args):
    process = subprocess.Popen([args.dsv3, "serve", "-m", args.model, "--port", "0", "--host", "127.0.0.1",
                                "--max-seqs", str(args.server_seqs), "--ctx", "256"],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(r"listening on http://[0-9.]+:(\d+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, int(match.group(1))
    process.kill()
    sys.exit("the server did not start")

def body_for(index, args):
    return {"prompt": "Request %d: tell me about the number %d." % (index, index * 7919 % 1000),
            "max_tokens": args.max_tokens, "temperature": 0.8, "top_k": 40, "seed": index, "ignore_eos": True}

def complete(port, key, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers=headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, json.loads(payload)

def run_phase(clients, args, port, expected):
    done, tokens, failures, latencies = [0], [0], [], []
    lock = threading.Lock()
    deadline = time.time() + args.time_limit
    def client(number):
        for r in range(args.requests):
            if time.time() > deadline:
                return
            index = (number * args.requests + r) % args.prompts
            start = time.time()
            try:
                status, body = complete(port, args.key, body_for(index, args))
            except Exception as error:
                with lock: failures.append("request %d: %r" % (index, error))
                continue
            elapsed = time.time() - start
            problem = None
            if status != 200:
                problem = "status %d: %s" % (status, body)
            elif len(body["choices"]) != 1 or body["usage"]["completion_tokens"] != args.max_tokens:
                problem = "wrong shape: %s" % body
            elif index in expected and body["choices"][0]["text"] != expected[index]:
                problem = "text differs from the 1-client run for prompt %d" % index
            with lock:
                if problem:
                    failures.append(problem)
                else:
                    expected.setdefault(index, body["choices"][0]["text"])
                    done[0] += 1
                    tokens[0] += body["usage"]["completion_tokens"]
                    latencies.append(elapsed)
    start = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    wall = time.time() - start
    latencies.sort()
    return {"clients": clients, "requests": done[0], "failures": failures, "seconds": wall,
            "requests_per_s": done[0] / wall, "tokens_per_s": tokens[0] / wall,
            "median_latency_s": latencies[len(latencies) // 2] if latencies else float("nan")}

def main():
    args = parse_args()
    process = None
    port = args.port
    if args.dsv3:
        process, port = start_server(args)
    if not port:
        sys.exit("give --port or --dsv3 and --model")
    try:
        expected = {}
        # The 1-client phase first: it records every prompt's text for the others to match.
        for index in range(args.prompts):
            status, body = complete(port, args.key, body_for(index, args))
            if status != 200:
                sys.exit("warm-up request failed: %s" % body)
            expected[index] = body["choices"][0]["text"]
        results = [run_phase(int(c), args, port, expected) for c in args.clients.split(",")]
    finally:
        if process:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    print("%8s %9s %9s %10s %11s %14s %9s" % ("clients", "requests", "failures", "seconds", "requests/s",
                                               "tokens/s", "p50 s"))
    for r in results:
        print("%8d %9d %9d %10.1f %11.2f %14.1f %9.2f" % (r["clients"], r["requests"], len(r["failures"]),
              r["seconds"], r["requests_per_s"], r["tokens_per_s"], r["median_latency_s"]))
    failures = [f for r in results for f in r["failures"]]
    for failure in failures[:10]:
        print("failure:", failure)
    sys.exit(1 if failures else 0)

if __name__ == "__main__":
    main()
