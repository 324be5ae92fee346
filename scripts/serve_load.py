#!/usr/bin/env python3
"""serve_load.py: a streaming load against an OpenAI-compatible /v1/completions endpoint.

    serve_load.py URL CONCURRENCY REQUESTS MAX_TOKENS PROMPTS_FILE [MODEL]

CONCURRENCY clients send REQUESTS greedy streaming completions in all (prompts taken round robin
from PROMPTS_FILE, one per line) and read every Server-Sent Event as it arrives. Prints one JSON
object: generated tokens/s over the wall time, time to first token p50/p99 (seconds from sending
the request to the first chunk that carries text), requests done and failed. Standard library only,
so the same client measures ramp and llama.cpp's llama-server alike.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse


def one_request(url, prompt, max_tokens, model):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True})
    sent = time.monotonic()
    connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        response.read()
        connection.close()
        raise RuntimeError(f"status {response.status}")
    first, tokens = None, 0
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        choices = chunk.get("choices") or []
        if choices and choices[0].get("text"):
            tokens += 1
            if first is None:
                first = time.monotonic() - sent
    connection.close()
    return first, tokens


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def main():
    url, concurrency, requests, max_tokens, prompts_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        int(sys.argv[4]), sys.argv[5]
    model = sys.argv[6] if len(sys.argv) > 6 else "model"
    prompts = [line.rstrip("\n") for line in open(prompts_file, encoding="utf-8") if line.strip()]
    lock = threading.Lock()
    next_index = [0]
    firsts, token_counts, failures = [], [], []

    def client():
        while True:
            with lock:
                i = next_index[0]
                if i >= requests:
                    return
                next_index[0] += 1
            try:
                first, tokens = one_request(url, prompts[i % len(prompts)], max_tokens, model)
                with lock:
                    if first is not None:
                        firsts.append(first)
                    token_counts.append(tokens)
            except Exception as e:  # counted, reported; the load goes on
                with lock:
                    failures.append(str(e))

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    print(json.dumps({"concurrency": concurrency, "requests": len(token_counts), "failed": len(failures),
                      "generated_tokens": sum(token_counts), "seconds": wall,
                      "tokens_per_second": sum(token_counts) / wall if wall > 0 else 0,
                      "ttft_p50": percentile(firsts, 50), "ttft_p99": percentile(firsts, 99),
                      "first_failure": failures[0] if failures else None}))


if __name__ == "__main__":
    main()
