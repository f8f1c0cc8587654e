"""Gondola's timing helper for llama.cpp's own server (the `xllamacpp` wheel), called in
process (`handle_embeddings`, no HTTP): loads the GGUF given with the thread count given,
prints one JSON line, then for each line read (a JSON list of texts) embeds them in one
request and prints the seconds it took.
"""

import json
import sys
import time

import xllamacpp


def main():
    path, threads = sys.argv[1], int(sys.argv[2])
    started = time.perf_counter()
    params = xllamacpp.CommonParams()
    params.model.path = path
    params.embedding = True
    params.n_parallel = 1
    params.n_ctx = 8192
    params.n_batch = 8192
    params.n_ubatch = 8192
    params.port = 0
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)
    print(json.dumps({"load_seconds": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        texts = json.loads(line)
        begin = time.perf_counter()
        answer = server.handle_embeddings({"model": "m", "input": texts})
        seconds = time.perf_counter() - begin
        count = len(answer["data"]) if isinstance(answer, dict) and "data" in answer else 0
        print(json.dumps({"seconds": seconds, "count": count}), flush=True)


if __name__ == "__main__":
    main()
