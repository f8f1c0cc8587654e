"""Gondola's timing helper for Piper's own engine (the `piper-tts` package, ONNX Runtime
from its `onnxruntime` dependency): loads the voice given with the thread count given, prints
one JSON line, then for each line read (a JSON string of text) synthesizes it sentence by
sentence and prints the seconds to the first audio and to the end, and the audio's samples.
"""

import json
import sys
import time

import onnxruntime
from piper import PiperVoice, SynthesisConfig


def main():
    path, threads = sys.argv[1], int(sys.argv[2])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    started = time.perf_counter()
    voice = PiperVoice.load(path)
    voice.session = onnxruntime.InferenceSession(
        path, sess_options=options, providers=["CPUExecutionProvider"]
    )
    print(json.dumps({"load_seconds": time.perf_counter() - started}), flush=True)
    config = SynthesisConfig()
    for line in sys.stdin:
        text = json.loads(line)
        begin = time.perf_counter()
        first = None
        samples = 0
        for chunk in voice.synthesize(text, syn_config=config):
            if first is None:
                first = time.perf_counter() - begin
            samples += len(chunk.audio_int16_array)
        print(
            json.dumps(
                {
                    "first_seconds": first,
                    "total_seconds": time.perf_counter() - begin,
                    "samples": samples,
                    "sample_rate": voice.config.sample_rate,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
