"""llama.cpp itself (llama-cpp-python), timed the way `gondola-bench engine` times Gondola's
engine: the same GGUF, the same prompt in SmolLM2's chat template, greedy decoding, the same
thread counts, each token timed as llama.cpp hands it over. Loads the model once, then for
every line on stdin runs one generation (from an empty cache) and prints one JSON line: time to
the first token, tokens generated, decode rate.

Usage: python llama_cpp_decode.py MODEL.gguf DECODE_THREADS PROMPT_THREADS MAX_TOKENS PROMPT
"""

import json
import sys
import time

from llama_cpp import Llama


def main() -> None:
    model, threads, prompt_threads, max_tokens, prompt = sys.argv[1:6]
    llama = Llama(
        model_path=model,
        n_ctx=2048,
        n_threads=int(threads),
        n_threads_batch=int(prompt_threads),
        n_gpu_layers=0,
        verbose=False,
    )
    # SmolLM2's chat template (ChatML, with its default system prompt when none is given), as
    # Gondola's engine renders it.
    text = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )
    tokens = llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    print(json.dumps({"ready": True, "prompt_tokens": len(tokens)}), flush=True)
    for _ in sys.stdin:
        llama.reset()
        started = time.perf_counter()
        times = []
        for token in llama.generate(tokens, temp=0.0, top_k=1, reset=True):
            times.append(time.perf_counter())
            if token == llama.token_eos() or len(times) >= int(max_tokens):
                break
        count = len(times)
        print(
            json.dumps(
                {
                    "first_token_ms": (times[0] - started) * 1e3,
                    "tokens": count,
                    "decode_tokens_per_second": (count - 1) / max(times[-1] - times[0], 1e-9),
                    "total_ms": (times[-1] - started) * 1e3,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
