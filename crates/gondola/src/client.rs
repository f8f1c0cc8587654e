//! The terminal clients: `gondola models`, `gondola chat`, `gondola embed`, `gondola speak`,
//! `gondola transcribe` and `gondola image`, speaking the public API of a running gateway like any other
//! client.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use wire::sse::{SseEvent, SseParser};

use crate::{ChatArgs, ClientArgs, EmbedArgs, ImageArgs, SpeakArgs, TranscribeArgs};

/// Largest SSE event accepted from the gateway.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Longest prompt read from standard input.
const MAX_STDIN_PROMPT_BYTES: u64 = 8 * 1024 * 1024;
/// A gateway that does not answer in this long is treated as down.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")
}

fn with_key(request: reqwest::RequestBuilder, args: &ClientArgs) -> reqwest::RequestBuilder {
    match &args.api_key {
        Some(key) => request.bearer_auth(key),
        None => request,
    }
}

/// Turns an error response into a readable message.
async fn failure(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    anyhow::anyhow!("the gateway answered {status}: {}", error_message(body))
}

/// The message of an API error body, or the body itself when it is not one.
fn error_message(body: String) -> String {
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/message")
                .or_else(|| value.get("error"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or(body)
}

fn unreachable(gateway: &str, error: reqwest::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot reach the gateway at {gateway} ({error}); is `gondola serve` running?")
}

/// `gondola embed`: the vectors of the texts given (or of standard input's lines), one JSON
/// array per line, in order; `--json` prints the gateway's whole answer.
pub async fn embed(args: &EmbedArgs) -> anyhow::Result<()> {
    let texts = if args.texts.is_empty() {
        let mut input = String::new();
        std::io::stdin()
            .take(MAX_STDIN_PROMPT_BYTES)
            .read_to_string(&mut input)
            .context("cannot read the texts from standard input")?;
        input
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        args.texts.clone()
    };
    if texts.is_empty() {
        bail!("no text to embed: give texts as arguments or lines on standard input");
    }
    let url = format!(
        "{}/v1/embeddings",
        args.client.gateway.trim_end_matches('/')
    );
    let response = with_key(http_client()?.post(url), &args.client)
        .json(&serde_json::json!({"model": args.model, "input": texts}))
        .send()
        .await
        .map_err(|error| unreachable(&args.client.gateway, error))?;
    if !response.status().is_success() {
        return Err(failure(response).await);
    }
    let list: wire::embeddings::EmbeddingList = response
        .json()
        .await
        .context("the gateway's answer is not a list of embeddings")?;
    let mut out = std::io::stdout().lock();
    if args.client.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    for item in &list.data {
        writeln!(out, "{}", serde_json::to_string(&item.embedding)?)?;
    }
    Ok(())
}

/// Most bytes of the gateway's answer to an image request (four large images in base64).
const MAX_IMAGE_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// `gondola image`: the prompt (or standard input) made into images by the gateway's image
/// model, written to the output file (`FILE-1.ext`, `FILE-2.ext`, … for several) in the
/// format of its extension, or to standard output.
pub async fn image(args: &ImageArgs) -> anyhow::Result<()> {
    use base64::Engine as _;
    let prompt = match &args.prompt {
        Some(prompt) => prompt.clone(),
        None => {
            let mut input = String::new();
            std::io::stdin()
                .take(MAX_STDIN_PROMPT_BYTES)
                .read_to_string(&mut input)
                .context("cannot read the prompt from standard input")?;
            input.trim().to_owned()
        }
    };
    let format = match &args.output {
        Some(path) => match path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("png") => "png",
            Some("jpg" | "jpeg") => "jpeg",
            Some("webp") => "webp",
            _ => bail!(
                "{} has no image extension: use .png, .jpg or .webp",
                path.display()
            ),
        },
        None if std::io::stdout().is_terminal() => {
            bail!("give --output FILE.png (or pipe standard output into a file)")
        }
        None if args.variants > 1 => bail!("several images need --output FILE"),
        None => "png",
    };
    let mut body = serde_json::json!({
        "model": args.model,
        "prompt": prompt,
        "format": format,
        "variants": args.variants,
    });
    if let Some(size) = &args.size {
        let (width, height) = size
            .split_once('x')
            .and_then(|(width, height)| {
                Some((width.parse::<u32>().ok()?, height.parse::<u32>().ok()?))
            })
            .with_context(|| format!("--size {size}: give WIDTHxHEIGHT, such as 512x512"))?;
        body["width"] = width.into();
        body["height"] = height.into();
    }
    for (field, value) in [
        (
            "negative_prompt",
            args.negative.clone().map(serde_json::Value::from),
        ),
        (
            "style_preset",
            args.style.clone().map(serde_json::Value::from),
        ),
        ("seed", args.seed.map(serde_json::Value::from)),
        ("steps", args.steps.map(serde_json::Value::from)),
        ("cfg_scale", args.cfg_scale.map(serde_json::Value::from)),
    ] {
        if let Some(value) = value {
            body[field] = value;
        }
    }
    let url = format!(
        "{}/api/v1/image/generate",
        args.client.gateway.trim_end_matches('/')
    );
    let response = with_key(http_client()?.post(url), &args.client)
        .json(&body)
        .send()
        .await
        .map_err(|error| unreachable(&args.client.gateway, error))?;
    if !response.status().is_success() {
        return Err(failure(response).await);
    }
    let mut answer = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.context("the gateway's answer broke off")?;
        if answer.len() + chunk.len() > MAX_IMAGE_ANSWER_BYTES {
            bail!("the gateway's answer is larger than four images can be");
        }
        answer.extend_from_slice(&chunk);
    }
    let answer: wire::images::VeniceImages =
        serde_json::from_slice(&answer).context("the gateway's answer is not a set of images")?;
    let images = answer
        .images
        .iter()
        .map(|image| {
            base64::engine::general_purpose::STANDARD
                .decode(image)
                .context("an image in the gateway's answer is not base64")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let Some(path) = &args.output else {
        std::io::stdout()
            .lock()
            .write_all(images.first().map_or(&[][..], Vec::as_slice))?;
        return Ok(());
    };
    for (index, image) in images.iter().enumerate() {
        let target = if images.len() == 1 {
            path.clone()
        } else {
            let stem = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or("image");
            let extension = path
                .extension()
                .and_then(|extension| extension.to_str())
                .unwrap_or(format);
            path.with_file_name(format!("{stem}-{}.{extension}", index + 1))
        };
        std::fs::write(&target, image)
            .with_context(|| format!("cannot write {}", target.display()))?;
        if args.client.json {
            println!(
                "{}",
                serde_json::json!({"file": target.display().to_string(), "bytes": image.len()})
            );
        } else {
            eprintln!("wrote {} ({} bytes)", target.display(), image.len());
        }
    }
    Ok(())
}

/// `gondola speak`: the text (or standard input) spoken by the gateway's voice, streamed into
/// the output file (its extension is the format) or standard output as mp3.
pub async fn speak(args: &SpeakArgs) -> anyhow::Result<()> {
    let text = match &args.text {
        Some(text) => text.clone(),
        None => {
            let mut input = String::new();
            std::io::stdin()
                .take(MAX_STDIN_PROMPT_BYTES)
                .read_to_string(&mut input)
                .context("cannot read the text from standard input")?;
            input
        }
    };
    let format = match &args.output {
        Some(path) => {
            let extension = path
                .extension()
                .and_then(|extension| extension.to_str())
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !wire::speech::FORMATS.contains(&extension.as_str()) {
                bail!(
                    "{} has no audio extension: use one of {}",
                    path.display(),
                    wire::speech::FORMATS.join(", ")
                );
            }
            extension
        }
        None => "mp3".to_owned(),
    };
    let url = format!(
        "{}/v1/audio/speech",
        args.client.gateway.trim_end_matches('/')
    );
    let mut body = serde_json::json!({
        "model": args.model,
        "input": text,
        "speed": args.speed,
        "response_format": format,
        "streaming": true,
    });
    if let Some(voice) = &args.voice {
        body["voice"] = voice.clone().into();
    }
    let response = with_key(http_client()?.post(url), &args.client)
        .json(&body)
        .send()
        .await
        .map_err(|error| unreachable(&args.client.gateway, error))?;
    if !response.status().is_success() {
        return Err(failure(response).await);
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        out.write_all(&chunk.context("the audio broke off")?)?;
    }
    out.flush()?;
    Ok(())
}

/// `gondola transcribe`: the file's transcript, in the format asked for, on standard output.
pub async fn transcribe(args: &TranscribeArgs) -> anyhow::Result<()> {
    let audio = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let file_name = args.file.file_name().map_or_else(
        || "audio".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let mut form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio).file_name(file_name),
        )
        .text("model", args.model.clone())
        .text("response_format", args.format.clone());
    if let Some(language) = &args.language {
        form = form.text("language", language.clone());
    }
    let url = format!(
        "{}/v1/audio/transcriptions",
        args.client.gateway.trim_end_matches('/')
    );
    let response = with_key(http_client()?.post(url), &args.client)
        .multipart(form)
        .send()
        .await
        .map_err(|error| unreachable(&args.client.gateway, error))?;
    if !response.status().is_success() {
        return Err(failure(response).await);
    }
    let body = response.text().await.context("the transcript broke off")?;
    let mut out = std::io::stdout().lock();
    write!(out, "{body}")?;
    if !body.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

pub async fn models(args: &ClientArgs) -> anyhow::Result<()> {
    let url = format!("{}/v1/models", args.gateway.trim_end_matches('/'));
    let response = with_key(http_client()?.get(url), args)
        .send()
        .await
        .map_err(|error| unreachable(&args.gateway, error))?;
    if !response.status().is_success() {
        return Err(failure(response).await);
    }
    let list: serde_json::Value = response
        .json()
        .await
        .context("the gateway's model list is not JSON")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let models = list
        .get("data")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    if models.is_empty() {
        println!("no models are served right now");
        return Ok(());
    }
    println!(
        "{:<28} {:>8} {:>9} {:>14} {:>14}  TRAITS",
        "MODEL", "CONTEXT", "PROVIDERS", "IN $/1M", "OUT $/1M"
    );
    for model in models {
        let spec = &model["model_spec"];
        let traits: Vec<&str> = spec["traits"]
            .as_array()
            .map(|traits| {
                traits
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<28} {:>8} {:>9} {:>14} {:>14}  {}",
            model["id"].as_str().unwrap_or("?"),
            model["context_length"].to_string(),
            spec["providers"].to_string(),
            spec["pricing"]["input"]["usd"].to_string(),
            spec["pricing"]["output"]["usd"].to_string(),
            traits.join(",")
        );
    }
    Ok(())
}

pub async fn chat(args: &ChatArgs) -> anyhow::Result<()> {
    let prompt = match args.prompt.as_deref() {
        Some(prompt) if prompt != "-" => prompt.to_owned(),
        _ => {
            if std::io::stdin().is_terminal() {
                bail!(
                    "give a prompt: gondola chat \"your question\" (or pipe it on standard input)"
                );
            }
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_STDIN_PROMPT_BYTES)
                .read_to_string(&mut text)
                .context("cannot read the prompt from standard input")?;
            text
        }
    };
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(serde_json::json!({ "role": "system", "content": system }));
    }
    messages.push(serde_json::json!({ "role": "user", "content": prompt }));
    let mut body = serde_json::json!({
        "model": args.model,
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if let Some(max_tokens) = args.max_tokens {
        body["max_tokens"] = max_tokens.into();
    }
    if let Some(temperature) = args.temperature {
        body["temperature"] = temperature.into();
    }
    if let Some(seed) = args.seed {
        body["seed"] = seed.into();
    }
    let client = &args.client;
    let (provider, mut stream) = if args.private {
        private_reply(args, &body).await?
    } else {
        let url = format!(
            "{}/v1/chat/completions",
            client.gateway.trim_end_matches('/')
        );
        let response = with_key(http_client()?.post(url).json(&body), client)
            .send()
            .await
            .map_err(|error| unreachable(&client.gateway, error))?;
        if !response.status().is_success() {
            return Err(failure(response).await);
        }
        let provider = response
            .headers()
            .get("x-gondola-provider")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        let stream = response
            .bytes_stream()
            .map(|bytes| bytes.context("the connection to the gateway broke"))
            .boxed();
        (provider, stream)
    };
    let mut parser = SseParser::new(MAX_EVENT_BYTES);
    let mut stdout = std::io::stdout().lock();
    let mut summary = None;
    while let Some(bytes) = stream.next().await {
        let bytes = bytes?;
        for event in parser.push(&bytes)? {
            let SseEvent::Data(data) = event else {
                continue;
            };
            let value: serde_json::Value =
                serde_json::from_str(&data).context("the gateway sent a malformed event")?;
            if let Some(error) = value.get("error") {
                writeln!(stdout)?;
                bail!(
                    "the reply failed: {}",
                    error["message"].as_str().unwrap_or("unknown error")
                );
            }
            if let Some(text) = value
                .pointer("/choices/0/delta/content")
                .and_then(serde_json::Value::as_str)
            {
                write!(stdout, "{text}")?;
                stdout.flush()?;
            }
            if let Some(usage) = value.get("usage").filter(|usage| !usage.is_null()) {
                summary = Some((usage.clone(), value.get("cost").cloned()));
            }
        }
    }
    writeln!(stdout)?;
    if client.json {
        if let Some((usage, cost)) = summary {
            eprintln!(
                "{}",
                serde_json::json!({ "provider": provider, "usage": usage, "cost": cost })
            );
        }
    } else if let Some((usage, cost)) = summary {
        let cost = cost
            .and_then(|cost| cost["usd"].as_f64())
            .map(|usd| format!(", ${}", display_usd(usd)))
            .unwrap_or_default();
        eprintln!(
            "[{provider}: {} prompt + {} completion tokens{cost}]",
            usage["prompt_tokens"], usage["completion_tokens"]
        );
    }
    Ok(())
}

/// A reply's bytes, as they arrive.
type ReplyStream = futures_util::stream::BoxStream<'static, anyhow::Result<bytes::Bytes>>;

/// Most bytes of a refusal read to explain it.
const MAX_REFUSAL_BYTES: usize = 64 * 1024;

/// Sends the chat request sealed, through the relay; the gateway answers without ever seeing
/// this machine's address. A reply sealed by its provider names the provider.
async fn private_reply(
    args: &ChatArgs,
    body: &serde_json::Value,
) -> anyhow::Result<(String, ReplyStream)> {
    let Some(relay) = &args.relay else {
        bail!(
            "--private sends through a relay: give --relay URL (or set GONDOLA_RELAY); \
             `gondola relay --gateway URL` runs one"
        );
    };
    // Keys come through the relay too (the configuration's default).
    let private = privacy::proxy::PrivateClient::new(privacy::proxy::ProxyConfig::new(relay))
        .context("cannot build the HTTP client")?;
    let authorization = args
        .client
        .api_key
        .as_ref()
        .map(|key| format!("Bearer {key}"));
    let body = serde_json::to_vec(body)?;
    // With a key, the request is paid with privacy tokens where the gateway issues them.
    // Sealed to the model's providers where they take sealed requests: then the gateway
    // cannot read it either, and the reply ends with the provider's signed receipt.
    let mut opened = private
        .send_chat("/v1/chat/completions", authorization.as_deref(), &body)
        .await
        .context("the private request failed")?;
    if opened.status != 200 {
        let mut text = Vec::new();
        while let Some(piece) = opened.body.next().await {
            let Ok(piece) = piece else { break };
            text.extend_from_slice(&piece);
            if text.len() > MAX_REFUSAL_BYTES {
                break;
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        bail!(
            "the gateway answered {}: {}",
            opened.status,
            error_message(text)
        );
    }
    // A sealed reply's body ends in an error unless the provider's receipt verifies, so a reply
    // read to its end is a verified one.
    let label = match &opened.sealed {
        Some((provider, _)) => format!("{provider}, sealed, receipt verified"),
        None => "private".to_owned(),
    };
    let stream = opened
        .body
        .map(|bytes| {
            bytes.context("the private reply broke off, was tampered with or failed its receipt")
        })
        .boxed();
    Ok((label, stream))
}

/// A small dollar amount for people: fixed notation, no trailing zeros.
fn display_usd(usd: f64) -> String {
    let text = format!("{usd:.10}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
