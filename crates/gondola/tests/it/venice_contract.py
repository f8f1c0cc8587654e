"""The contract test's client: real requests to every Venice operation Gondola serves, each
answer (status, headers, content type, body, and each chunk of a stream) validated against Venice's own
OpenAPI document and against Gondola's `openapi.json`. Answers the Rust side obtained itself
(those that need a wallet's signature) come in a file named by CONTRACT_EXTRA.

Prints one JSON line: {"checked": [...], "violations": [...]}; the Rust side fails on any
violation and checks that every served Venice operation was exercised."""
import base64
import json
import os
import re

import httpx
import yaml
from openapi_schema_validator import OAS30Validator, OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

BASE = os.environ["GONDOLA_URL"].rstrip("/")
ADMIN = os.environ["ACCOUNT_ADMIN_KEY"]
INFERENCE = os.environ["ACCOUNT_INFERENCE_KEY"]
IMAGE_MODEL = os.environ["IMAGE_MODEL"]
VIDEO_MODEL = os.environ["VIDEO_MODEL"]


def load_yaml(path):
    """YAML as JSON reads it: dates stay strings, and so do `on`, `off`, `yes` and `no`
    (Venice's `enable_web_search` takes the strings `auto`, `off` and `on`)."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        key: [
            (tag, regexp)
            for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
        ]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    with open(path) as file:
        return yaml.load(file, Loader=Loader)


VENICE = load_yaml(os.environ["VENICE_SPEC"])
GONDOLA = httpx.get(f"{BASE}/api/v1/openapi.json").json()
REGISTRY = Registry().with_resources([
    ("urn:venice", Resource.from_contents(VENICE, default_specification=DRAFT4)),
    ("urn:gondola", Resource.from_contents(GONDOLA, default_specification=DRAFT202012)),
])
checked = []
violations = []
# Statuses Venice's error list gives every route that its OpenAPI document omits on some.
VENICE_LISTED_ERRORS = {404}


def pointer(*parts):
    return "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def response_schema(spec, urn, prefix, path, method, status, content_type):
    """The schema `spec` gives for this answer, as a reference into it; None if it has none."""
    operation = spec["paths"].get(prefix + path, {}).get(method)
    if operation is None:
        return None, f"{urn}: no {method.upper()} {prefix + path}"
    responses = operation.get("responses", {})
    key = str(status) if str(status) in responses else ("default" if "default" in responses else None)
    if key is None and urn == "urn:venice" and status in VENICE_LISTED_ERRORS:
        # Venice's error list (reference/venice-api.md) names this status for every route;
        # its OpenAPI document leaves it out of some: the error shape is Venice's own.
        return {"$ref": "urn:venice#/components/schemas/StandardError"}, None
    if key is None:
        return None, f"{urn}: status {status} is not documented for {method.upper()} {path}"
    response = responses[key]
    location = ["", "paths", prefix + path, method, "responses", key]
    if "$ref" in response:
        # A shared response: #/components/responses/<name>.
        location = response["$ref"][1:].split("/")
        response = spec["components"]["responses"][location[-1]]
    content = response.get("content", {})
    if content_type not in content:
        return None, f"{urn}: {content_type} is not documented for {method.upper()} {path} {status}"
    if "schema" not in content[content_type]:
        return None, None
    ref = "#" + pointer(*location, "content", content_type, "schema")
    return {"$ref": urn + ref}, None


def documented_headers(spec, prefix, path, method, status):
    """The headers `spec` documents for this answer: name -> header object, `$ref`s followed."""
    operation = spec["paths"].get(prefix + path, {}).get(method) or {}
    responses = operation.get("responses", {})
    response = responses.get(str(status)) or responses.get("default") or {}
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].split("/")[-1]]
    headers = {}
    for name, header in response.get("headers", {}).items():
        if "$ref" in header:
            header = spec["components"]["headers"][header["$ref"].split("/")[-1]]
        headers[name.lower()] = header
    return headers


def check_headers(path, method, status, headers, venice=True, label=None):
    """Every documented header that is required is there, and each one there fits its schema."""
    documents = [("urn:gondola", GONDOLA, "/api/v1")]
    if venice:
        documents.append(("urn:venice", VENICE, ""))
    for urn, spec, prefix in documents:
        for name, header in documented_headers(spec, prefix, path, method, status).items():
            value = headers.get(name)
            if value is None:
                if header.get("required"):
                    violations.append({"what": label, "document": urn, "error": f"header {name} is missing"})
                continue
            schema = header.get("schema", {})
            candidate = value
            if schema.get("type") in ("integer", "number"):
                try:
                    candidate = int(value) if schema["type"] == "integer" else float(value)
                except ValueError:
                    pass
            elif schema.get("type") == "boolean" and value in ("true", "false"):
                candidate = value == "true"
            validator = (OAS31Validator if urn == "urn:gondola" else OAS30Validator)(schema, registry=REGISTRY)
            for error in validator.iter_errors(candidate):
                violations.append({"what": label, "document": urn, "at": f"header {name}", "error": error.message[:300]})


def check(path, method, status, content_type, body, venice=True, what=None):
    """Validates one answer body against both documents."""
    label = what or f"{method.upper()} {path} {status}"
    checked.append({"path": path, "method": method, "status": status, "what": label})
    documents = [("urn:gondola", GONDOLA, "/api/v1", OAS31Validator)]
    if venice:
        documents.append(("urn:venice", VENICE, "", OAS30Validator))
    for urn, spec, prefix, validator_class in documents:
        schema, missing = response_schema(spec, urn, prefix, path, method, status, content_type)
        if missing:
            violations.append({"what": label, "document": urn, "error": missing})
            continue
        if schema is None:
            continue
        validator = validator_class(schema, registry=REGISTRY)
        for error in validator.iter_errors(body):
            violations.append({
                "what": label,
                "document": urn,
                "at": "/".join(str(part) for part in error.absolute_path),
                "error": error.message[:400],
            })


def call(method, path, key=INFERENCE, venice=True, expect=None, template=None, **options):
    response = httpx.request(
        method, f"{BASE}/api/v1{path}", headers={"authorization": f"Bearer {key}"}, timeout=120, **options
    )
    content_type = response.headers.get("content-type", "").split(";")[0]
    body = response.json() if content_type == "application/json" else response.text
    template = template or path.split("?")[0]
    check(template, method.lower(), response.status_code, content_type, body, venice)
    check_headers(template, method.lower(), response.status_code, response.headers, venice,
                  f"{method} {template} {response.status_code}")
    if expect is not None and response.status_code != expect:
        violations.append({"what": f"{method} {path}", "error": f"status {response.status_code}, expected {expect}: {body}"})
    return response, body


def chat_body(**extra):
    return {
        "model": "default",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0,
        **extra,
    }


WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

# Models.
call("GET", "/models", expect=200)
call("GET", "/models?type=text", expect=200)
call("GET", "/models/traits", expect=200)
call("GET", "/models/compatibility_mapping", expect=200)

# Characters, and a chat that plays one.
call("GET", "/characters", expect=200)
call("GET", "/characters?tags=roleplay&isAdult=false&limit=10", expect=200)
call("GET", "/characters/ship-captain", expect=200, template="/characters/{slug}")
call("GET", "/characters/no-such-character", expect=404, template="/characters/{slug}")
call("POST", "/chat/completions", json=chat_body(venice_parameters={"character_slug": "ship-captain"}), expect=200)

# Chat: whole, with tools, with Venice parameters, refused.
call("POST", "/chat/completions", json=chat_body(), expect=200)
call("POST", "/chat/completions", json=chat_body(tools=WEATHER, tool_choice="required", max_tokens=48), expect=200)
call("POST", "/chat/completions", json=chat_body(venice_parameters={
    "include_venice_system_prompt": False, "enable_web_search": "auto"}), expect=200)
call("POST", "/chat/completions", json={"model": "default", "messages": []}, expect=400)
call("POST", "/chat/completions", json=chat_body(model="no-such-model"), expect=404)

# Chat, streamed: the response's head, then each chunk (Venice documents no chunk schema;
# Gondola's does).
with httpx.stream("POST", f"{BASE}/api/v1/chat/completions", timeout=120,
                  headers={"authorization": f"Bearer {INFERENCE}"},
                  json=chat_body(stream=True, stream_options={"include_usage": True})) as response:
    assert response.status_code == 200, response.status_code
    chunks = 0
    for line in response.iter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[len("data: "):])
        chunks += 1
        checked.append({"path": "/chat/completions", "method": "post", "status": 200, "what": "stream chunk"})
        for error in OAS31Validator({"$ref": "urn:gondola#/components/schemas/ChatCompletionChunk"},
                                    registry=REGISTRY).iter_errors(chunk):
            violations.append({"what": "stream chunk", "document": "urn:gondola", "at": "/".join(map(str, error.absolute_path)), "error": error.message[:400]})
    assert chunks > 1, chunks

# Embeddings, with Venice's model id (an alias of the embedding model served here).
call("GET", "/models?type=embedding", expect=200)
call("POST", "/embeddings", json={"model": "text-embedding-bge-m3", "input": ["The quick brown fox", "jumped"]}, expect=200)
# Venice's document takes `encoding_format: base64` but writes its answer as numbers only; the
# base64 answer (a string, as OpenAI's) is held to Gondola's document.
call("POST", "/embeddings", json={"model": "text-embedding-bge-m3", "input": "fox", "encoding_format": "base64"}, venice=False, expect=200)
call("POST", "/embeddings", json={"model": "text-embedding-bge-m3", "input": ""}, expect=400)

# Speech, and its audio transcribed back.
speech, _ = call("POST", "/audio/speech", json={"input": "Hello from the contract test.", "response_format": "wav"}, expect=200)
call("POST", "/audio/speech", json={"input": ""}, expect=400)
call("GET", "/models?type=tts", expect=200)
call("POST", "/audio/transcriptions", files={"file": ("speech.wav", speech.content, "audio/wav")},
     data={"model": "openai/whisper-large-v3"}, expect=200)
call("POST", "/audio/transcriptions", files={"file": ("speech.wav", speech.content, "audio/wav")},
     data={"response_format": "text"}, expect=200)
call("POST", "/audio/transcriptions", files={"file": ("x.bin", b"not audio", "application/octet-stream")}, expect=400)

# Images, from a provider in front of a stand-in image engine: base64 and binary, OpenAI's
# shape with an OpenAI model name and as a data URL, the styles, and a refusal.
call("GET", "/models?type=image", expect=200)
call("GET", "/image/styles", expect=200)
call("POST", "/image/generate", json={"model": IMAGE_MODEL, "prompt": "a red fox", "width": 64, "height": 64,
                                      "format": "png", "variants": 2, "style_preset": "Anime", "seed": 5}, expect=200)
call("POST", "/image/generate", json={"model": IMAGE_MODEL, "prompt": "a red fox", "width": 64, "height": 64,
                                      "return_binary": True}, expect=200)
call("POST", "/images/generations", json={"model": "dall-e-3", "prompt": "a red fox", "size": "256x256"}, expect=200)
call("POST", "/images/generations", json={"prompt": "a red fox", "size": "256x256", "response_format": "url"}, expect=200)
call("POST", "/image/generate", json={"model": IMAGE_MODEL, "prompt": ""}, expect=400)


def png(width, height):
    """A real PNG: a red square on blue."""
    import struct
    import zlib
    rows = b"".join(
        b"\x00" + b"".join(bytes((200, 40, 40)) if width // 4 <= x < 3 * width // 4 and height // 4 <= y < 3 * height // 4
                            else bytes((40, 60, 180)) for x in range(width))
        for y in range(height))
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# Background removal by the embedded model: a file upload, base64 JSON, and a refused URL.
call("POST", "/image/background-remove", files={"image": ("square.png", png(64, 64), "image/png")}, expect=200)
call("POST", "/image/background-remove", json={"image": base64.b64encode(png(32, 32)).decode()}, expect=200)
call("POST", "/image/background-remove", json={"image_url": "https://example.com/a.png"}, expect=400)
# Edits and upscales, by providers in front of the stand-in engine.
call("POST", "/image/edit", files={"image": ("square.png", png(256, 256), "image/png")},
     data={"prompt": "make it winter", "model": IMAGE_MODEL}, expect=200)
call("POST", "/image/edit", json={"image": base64.b64encode(png(256, 256)).decode(), "model": IMAGE_MODEL}, expect=400)
call("POST", "/image/upscale", json={"image": base64.b64encode(png(256, 256)).decode(), "scale": 2}, expect=200)
call("POST", "/image/upscale", files={"image": ("square.png", png(256, 256), "image/png")}, data={"scale": "4"}, expect=200)

# Video: a quote, a job queued, its progress, the video, and the job completed; a bad
# duration refused.
call("POST", "/video/quote", json={"model": VIDEO_MODEL, "duration": "4s"}, expect=200)
_, queued = call("POST", "/video/queue", json={"model": VIDEO_MODEL, "prompt": "a fox runs", "duration": "4s"}, expect=200)
job = {"model": VIDEO_MODEL, "queue_id": queued.get("queue_id", "missing") if isinstance(queued, dict) else "missing"}
_, progress = call("POST", "/video/retrieve", json=job, expect=200)
if not (isinstance(progress, dict) and progress.get("status") == "PROCESSING"):
    violations.append({"what": "video progress", "error": f"expected PROCESSING, got {progress!r}"[:300]})
video, _ = call("POST", "/video/retrieve", json=job, expect=200)
if video.headers.get("content-type") != "video/mp4" or len(video.content) < 1000:
    violations.append({"what": "video", "error": f"expected an MP4, got {video.headers.get('content-type')}"})
call("POST", "/video/complete", json=job, expect=200)
call("POST", "/video/retrieve", json=job, expect=404)
call("POST", "/video/queue", json={"model": VIDEO_MODEL, "prompt": "a fox runs", "duration": "5s"}, expect=400)

# API keys, as the account's ADMIN key sees them.
call("GET", "/api_keys", key=ADMIN, expect=200)
_, created = call("POST", "/api_keys", key=ADMIN, expect=200, json={
    "apiKeyType": "INFERENCE", "description": "contract", "consumptionLimit": {"usd": 5}})
key_id = created.get("data", {}).get("id", "missing")
call("GET", f"/api_keys/{key_id}", key=ADMIN, expect=200, template="/api_keys/{id}")
call("PATCH", "/api_keys", key=ADMIN, expect=200, json={"id": key_id, "description": "contract, renamed"})
# Venice's expiry: a moment, or "" or null for none; on an update, "" or null removes it and
# absence leaves it.
_, expiring = call("POST", "/api_keys", key=ADMIN, expect=200, json={
    "apiKeyType": "INFERENCE", "description": "expiring", "expiresAt": "2099-01-02"})
expiring_id = expiring.get("data", {}).get("id", "missing")
_, never = call("POST", "/api_keys", key=ADMIN, expect=200, json={
    "apiKeyType": "INFERENCE", "description": "never", "expiresAt": ""})


def expiry_is(body, expected, what):
    found = body.get("data", {}).get("expiresAt", "absent") if isinstance(body, dict) else "absent"
    if found != expected:
        violations.append({"what": what, "error": f"expiresAt {found!r}, expected {expected!r}"})


expiry_is(expiring, "2099-01-02T00:00:00.000Z", "a key created with a date expires then")
expiry_is(never, None, "a key created with an empty expiry never expires")
_, kept = call("PATCH", "/api_keys", key=ADMIN, expect=200, json={"id": expiring_id, "description": "still expiring"})
expiry_is(kept, "2099-01-02T00:00:00.000Z", "an update without expiresAt keeps the expiry")
_, removed = call("PATCH", "/api_keys", key=ADMIN, expect=200, json={"id": expiring_id, "expiresAt": None})
expiry_is(removed, None, "an update with expiresAt null removes the expiry")
for made in (expiring_id, never.get("data", {}).get("id", "missing")):
    call("DELETE", f"/api_keys?id={made}", key=ADMIN, expect=200)
call("GET", "/api_keys/rate_limits", key=ADMIN, expect=200)
call("GET", "/api_keys/rate_limits/log", key=ADMIN, expect=200)
call("GET", "/api_keys/generate_web3_key", expect=200)
call("DELETE", f"/api_keys?id={key_id}", key=ADMIN, expect=200)
call("GET", "/api_keys", key="sk-not-a-key", expect=401)

# Billing.
call("GET", "/billing/balance", key=ADMIN, expect=200)
call("GET", "/billing/usage-history", key=ADMIN, expect=200)
call("GET", "/billing/usage-history?currency=DIEM&pageSize=10&startTimestamp=2020-01-01%2000:00:00%2B00:00", key=ADMIN, expect=200)
call("GET", "/billing/usage-history?cursor=bm90LWEtY3Vyc29y", key=ADMIN, expect=400)
call("GET", "/billing/usage-days", key=ADMIN, venice=False, expect=200)

# Answers the Rust side obtained (a wallet-signed key request).
for extra in json.load(open(os.environ["CONTRACT_EXTRA"])):
    check(extra["path"], extra["method"], extra["status"], "application/json", extra["body"])

print(json.dumps({"checked": checked, "violations": violations}))
