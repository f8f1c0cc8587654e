"""llama.cpp's own server (the `xllamacpp` wheel, which runs llama.cpp's C++ server in this
process), serving the GGUF given as the first argument: embeddings when the second argument
is `embedding`, chat otherwise.

Prints `listening on <URL>` once it answers, then serves until its standard input closes.
"""

import sys

import xllamacpp


def main():
    path, kind = sys.argv[1], sys.argv[2]
    params = xllamacpp.CommonParams()
    params.model.path = path
    params.embedding = kind == "embedding"
    params.n_parallel = 2
    params.n_ctx = 2048
    params.port = 0
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    server = xllamacpp.Server(params)
    print(f"listening on {server.listening_address}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
