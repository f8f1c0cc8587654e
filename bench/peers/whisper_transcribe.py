"""Gondola's timing helper for faster-whisper (CTranslate2 from its `ctranslate2`
dependency): loads the Whisper model directory given with the thread count given, prints one
JSON line, then for each line read (a JSON object: the path of a 16 kHz mono float32 file and
whether word timings are wanted) transcribes the samples greedily in English and prints the
seconds it took and the text.
"""

import json
import sys
import time

import numpy
from faster_whisper import WhisperModel


def main():
    path, threads = sys.argv[1], int(sys.argv[2])
    started = time.perf_counter()
    model = WhisperModel(path, device="cpu", cpu_threads=threads, num_workers=1)
    print(json.dumps({"load_seconds": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        asked = json.loads(line)
        samples = numpy.fromfile(asked["samples"], dtype=numpy.float32)
        begin = time.perf_counter()
        segments, _ = model.transcribe(
            samples,
            language="en",
            beam_size=1,
            condition_on_previous_text=False,
            without_timestamps=not asked["words"],
            word_timestamps=asked["words"],
        )
        text = " ".join(segment.text.strip() for segment in segments)
        print(
            json.dumps({"seconds": time.perf_counter() - begin, "text": text}),
            flush=True,
        )


if __name__ == "__main__":
    main()
