"""llama.cpp's own server for chat (the `xllamacpp` wheel, which runs llama.cpp's C++ server in
this process): `llama_chat_server.py MODEL.gguf SLOTS CONTEXT_PER_SLOT THREADS BATCH_THREADS
KV_TYPE`.

SLOTS sequences decode together (continuous batching), each with CONTEXT_PER_SLOT tokens of
KV cache of KV_TYPE (`f16` or `q8_0`); THREADS threads decode one sequence, BATCH_THREADS
run larger steps (prompts, several sequences). Prompts are not cached (neither in the
slots nor in host memory), so that every request computes its whole prompt. Prints `listening on <URL>` once it
answers, then serves until its standard input closes.
"""

import sys

import xllamacpp


def main():
    path, slots, context = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    threads, batch_threads = int(sys.argv[4]), int(sys.argv[5])
    kv_type = {"f16": xllamacpp.ggml_type.GGML_TYPE_F16, "q8_0": xllamacpp.ggml_type.GGML_TYPE_Q8_0}[sys.argv[6]]
    params = xllamacpp.CommonParams()
    params.model.path = path
    params.n_parallel = slots
    params.n_ctx = slots * context
    params.port = 0
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = batch_threads
    params.cache_type_k = kv_type
    params.cache_type_v = kv_type
    params.cache_prompt = False
    params.cache_ram_mib = 0
    server = xllamacpp.Server(params)
    print(f"listening on {server.listening_address}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
