"""Drives Gondola with the official openai client; prints one JSON line of what it saw."""
import json

import openai

client = openai.OpenAI()
completion = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Name a fruit."}],
    max_tokens=12,
    temperature=0,
)
chunks = 0
streamed = ""
stream_usage = None
for chunk in client.chat.completions.create(
    model="default",
    messages=[{"role": "user", "content": "Count to three."}],
    max_tokens=16,
    stream=True,
    stream_options={"include_usage": True},
):
    chunks += 1
    if chunk.choices and chunk.choices[0].delta.content:
        streamed += chunk.choices[0].delta.content
    if chunk.usage:
        stream_usage = chunk.usage.completion_tokens
try:
    client.chat.completions.create(model="default", messages=[], max_tokens=1)
    bad_status = None
except openai.BadRequestError as error:
    bad_status = error.status_code
print(json.dumps({
    "completion": completion.choices[0].message.content,
    "completion_tokens": completion.usage.completion_tokens,
    "stream_chunks": chunks,
    "streamed": streamed,
    "stream_usage_completion_tokens": stream_usage,
    "models": [model.id for model in client.models.list()],
    "bad_request_status": bad_status,
}))
