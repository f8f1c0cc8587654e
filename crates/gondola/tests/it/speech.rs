//! Speech against the real binary and the real Piper voice: what it says is heard back by
//! Whisper in every format, through the official SDK; every format decodes with FFmpeg to the
//! same length as the WAV; a streamed reply comes sentence by sentence; bad requests are
//! refused in the API's shape with the process up; the text stays out of the logs; and each
//! character is charged at the model's price.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::economy::{decimal_units, staked_account_key};
use crate::sdk::run_script;
use crate::support::{binary, client, gateway, serve, speech_model_path};

const SPEECH_MODEL: &str = "piper-en-us-joe";
const ADMIN_SECRET: &str = "sk-speech-operator";

async fn speak(
    http: &reqwest::Client,
    url: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = http
        .post(format!("{url}/v1/audio/speech"))
        .json(&body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

/// Seconds of audio in `audio` (of `format`), decoded by FFmpeg to raw samples.
fn decoded_seconds(audio: &[u8], format: &str) -> f64 {
    let mut input = vec!["-hide_banner", "-loglevel", "error"];
    if format == "pcm" {
        input.extend(["-f", "s16le", "-ar", "24000", "-ac", "1"]);
    }
    let mut child = Command::new("ffmpeg")
        .args(&input)
        .args([
            "-i", "pipe:0", "-f", "s16le", "-ar", "16000", "-ac", "1", "pipe:1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let mut stdin = child.stdin.take().expect("stdin");
    let bytes = audio.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        let _ = stdin.write_all(&bytes);
    });
    let output = child.wait_with_output().expect("ffmpeg output");
    writer.join().expect("writer");
    assert!(
        output.status.success(),
        "{format} does not decode: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout.len() as f64 / 2.0 / 16_000.0
}

/// Root mean square of 16-bit little-endian samples.
fn loudness(samples: &[u8]) -> f64 {
    let count = samples.len() / 2;
    let sum: f64 = samples
        .chunks_exact(2)
        .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])).powi(2))
        .sum();
    (sum / count.max(1) as f64).sqrt()
}

#[tokio::test(flavor = "multi_thread")]
async fn speech_is_heard_back_as_its_text_in_every_format_through_the_sdk() {
    let (_process, url, _dir) = serve(&[], None);
    let result = run_script("openai_speech.py", format!("{url}/v1")).await;
    for format in ["mp3", "opus", "aac", "flac", "wav", "pcm"] {
        let wer = result[format]["wer"].as_f64().expect(format);
        // Whisper tiny.en mishears a word here and there; a voice saying something else, or
        // nothing, scores near 1.
        assert!(wer < 0.25, "{format}: {}", result[format]);
        let gondola = result[format]["gondola_wer"].as_f64().expect(format);
        assert!(
            gondola < 0.25,
            "Gondola's transcription of {format}: {}",
            result[format]
        );
        assert!(result[format]["bytes"].as_u64().expect("size") > 1000);
    }
    assert!(
        result["streamed"]["wer"].as_f64().expect("wer") < 0.25,
        "{result}"
    );
    assert!(
        result["streamed"]["pieces"].as_u64().expect("pieces") > 1,
        "a streamed reply comes in pieces: {result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_format_decodes_to_the_same_speech_and_bad_requests_are_refused() {
    let (mut process, url, _dir) = serve(&[], None);
    let http = client();
    let canary = "Canary turquoise giraffes sing quietly. They never stop.";

    let (status, headers, wav) = speak(
        &http,
        &url,
        json!({"model": "tts-1", "input": canary, "response_format": "wav"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "audio/wav");
    assert_eq!(headers["x-venice-model-id"], SPEECH_MODEL);
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    let rate = u32::from_le_bytes(wav[24..28].try_into().expect("4"));
    let data = u32::from_le_bytes(wav[40..44].try_into().expect("4")) as usize;
    assert_eq!(data, wav.len() - 44, "a whole WAV says its length");
    let seconds = data as f64 / 2.0 / f64::from(rate);
    // Two short sentences: a second or two each, and loud enough to be speech.
    assert!((1.5..12.0).contains(&seconds), "{seconds} s");
    assert!(loudness(&wav[44..]) > 500.0);
    let reference = decoded_seconds(&wav, "wav");

    for (format, content_type) in [
        ("mp3", "audio/mpeg"),
        ("opus", "audio/opus"),
        ("aac", "audio/aac"),
        ("flac", "audio/flac"),
        ("pcm", "audio/pcm"),
    ] {
        for streaming in [false, true] {
            let (status, headers, audio) = speak(
                &http,
                &url,
                json!({"input": canary, "response_format": format, "streaming": streaming, "voice": "joe"}),
            )
            .await;
            assert_eq!(status, 200, "{format}");
            assert_eq!(headers["content-type"], content_type);
            let length = decoded_seconds(&audio, format);
            assert!(
                (length - reference).abs() < 0.25 * reference,
                "{format} (streaming {streaming}): {length} s against {reference} s"
            );
        }
    }
    // Slower speech is longer.
    let (_, _, slow) = speak(
        &http,
        &url,
        json!({"input": canary, "response_format": "wav", "speed": 0.5}),
    )
    .await;
    assert!(decoded_seconds(&slow, "wav") > 1.5 * reference);

    // Bad requests: refused in the API's shape, naming the field; the process stays up.
    for (body, param) in [
        (json!({"input": ""}), "input"),
        (json!({"input": "a".repeat(4097)}), "input"),
        (json!({"input": "hello", "speed": 5}), "speed"),
        (
            json!({"input": "hello", "response_format": "ogg"}),
            "response_format",
        ),
        (json!({"input": "hello", "voice": "nobody"}), "voice"),
        (
            json!({"input": "hello", "model": "all-minilm-l6-v2"}),
            "model",
        ),
    ] {
        let (status, _, error) = speak(&http, &url, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        let error: Value = serde_json::from_slice(&error).expect("an API error");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
    let response = http
        .post(format!("{url}/api/v1/audio/speech"))
        .json(&json!({"input": ""}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let venice: Value = response.json().await.expect("json");
    assert!(venice["error"].is_string(), "{venice}");

    // The catalogue and the voice list.
    let voices: Value = http
        .get(format!("{url}/v1/audio/voices"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(voices["data"][0]["id"], "joe", "{voices}");
    assert_eq!(voices["data"][0]["model"], SPEECH_MODEL);
    let models: Value = http
        .get(format!("{url}/v1/models?type=tts"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(models["data"][0]["id"], SPEECH_MODEL, "{models}");
    assert_eq!(models["data"][0]["model_spec"]["voices"][0], "joe");

    // The command line writes a file of the extension's format.
    let file = tempfile::NamedTempFile::with_suffix(".flac").expect("temp file");
    let output = Command::new(binary())
        .args(["speak", "--gateway", &url, "-o"])
        .arg(file.path())
        .arg(canary)
        .output()
        .expect("run gondola speak");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = std::fs::read(file.path()).expect("read");
    assert_eq!(&written[..4], b"fLaC");
    assert!((decoded_seconds(&written, "flac") - reference).abs() < 0.25 * reference);

    // Still up, and nothing of the text reached the logs.
    let (status, _, _) = speak(&http, &url, json!({"input": "Still here."})).await;
    assert_eq!(status, 200);
    process.kill();
    let log = process.stderr();
    assert!(log.contains("speech"), "the request's log line is there");
    assert!(!log.contains("turquoise"), "{log}");
    assert!(!log.contains("giraffes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn speech_is_charged_per_character_at_the_models_price() {
    // $1,000 per million characters: a thousandth of a dollar per character.
    let config = format!(
        "{}\n[gateway.models.pricing.{SPEECH_MODEL}]\ninput_usd_per_million = \"1000\"\noutput_usd_per_million = \"0\"\n",
        crate::economy::ledger_config("1", ADMIN_SECRET, "1")
    );
    let (_process, url, dir) = serve(&[], Some(&config));
    let (key, _) = staked_account_key(&url, dir.path(), "user", "100");
    let http = client();
    let request = |input: &'static str| {
        let http = http.clone();
        let url = url.clone();
        let key = key.clone();
        async move {
            let response = http
                .post(format!("{url}/v1/audio/speech"))
                .bearer_auth(&key)
                .json(&json!({"input": input, "response_format": "wav"}))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let balance = decimal_units(
                response.headers()["x-venice-balance-diem"]
                    .to_str()
                    .expect("text"),
            );
            // The whole audio, so that the request is settled before the next one.
            let _ = response.bytes().await.expect("audio");
            (status, balance)
        }
    };
    let spoken = "Twenty-six characters, ok.";
    let (status, before) = request(spoken).await;
    assert_eq!(status, 200);
    let (status, after) = request("Again.").await;
    assert_eq!(status, 200);
    assert_eq!(
        before - after,
        spoken.chars().count() as u128 * 10u128.pow(15),
        "each character at a thousandth of a dollar"
    );
    let (status, _, _) = speak(&http, &url, json!({"input": "free?"})).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_fronts_an_openai_compatible_speech_engine_and_fails_over_to_another() {
    // The engine: another Gondola's OpenAI-compatible /v1/audio/speech.
    let (_engine, engine_url, _engine_dir) = serve(&[], None);
    let (_gateway, url, _dir) = gateway("");
    let engine_base = format!("{engine_url}/v1");
    let mut upstream = crate::support::typed_provider(
        &url,
        "team-voice",
        "tts",
        &["--upstream", &engine_base, "--model", "tts-1"],
    );
    let http = client();
    let body = json!({"model": "team-voice", "input": "Fronted speech works.", "voice": "alloy", "response_format": "wav"});
    let (status, headers, through_upstream) = speak(&http, &url, body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "audio/wav");
    let upstream_seconds = decoded_seconds(&through_upstream, "wav");
    assert!(upstream_seconds > 0.5);
    // Streamed through the upstream too.
    let mut streamed = body.clone();
    streamed["streaming"] = json!(true);
    streamed["response_format"] = json!("mp3");
    let (status, _, audio) = speak(&http, &url, streamed).await;
    assert_eq!(status, 200);
    assert!((decoded_seconds(&audio, "mp3") - upstream_seconds).abs() < 0.25 * upstream_seconds);

    // A second provider of the model with the embedded voice; the first goes away without a
    // word, and speech goes on.
    speech_model_path();
    let _embedded =
        crate::support::typed_provider(&url, "team-voice", "tts", &["--model", "piper-en-us-joe"]);
    upstream.kill();
    for _ in 0..3 {
        let (status, _, audio) = speak(&http, &url, body.clone()).await;
        assert_eq!(status, 200);
        assert!(
            (decoded_seconds(&audio, "wav") - upstream_seconds).abs() < 0.25 * upstream_seconds
        );
    }
}

/// Piper's own HTTP server (`python -m piper.http_server`, from the `piper-tts` package) with
/// the voice's model, on a free port: stopped when dropped.
struct PiperServer {
    child: std::process::Child,
    url: String,
}

impl PiperServer {
    fn start(model: &std::path::Path) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(crate::sdk::python())
            .args([
                "-m",
                "piper.http_server",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "-m",
            ])
            .arg(model)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start Piper's server");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_once("Running on ")
                    .map(|(_, url)| url.trim().to_owned())
            })
            .expect("Piper's server says where it listens");
        // Its log goes on being read, so that a full pipe never stops it.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, url }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PiperServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_fronts_pipers_own_server_in_every_format() {
    let model = speech_model_path();
    let mut engine = PiperServer::start(&model);
    let (_gateway, url, _dir) = gateway("");
    let _provider = crate::support::typed_provider(
        &url,
        "team-piper",
        "tts",
        &[
            "--upstream",
            &engine.url,
            "--upstream-api",
            "piper",
            "--model",
            "en_US-joe-medium",
        ],
    );
    let http = client();
    let text = "Piper's own server speaks through Gondola. Every format is encoded here.";
    // The server's own answer to the same text: its length is what the front must give.
    let direct = http
        .post(format!("{}/synthesize", engine.url))
        .json(&json!({"text": text}))
        .send()
        .await
        .expect("send");
    assert_eq!(direct.status(), 200);
    let direct_seconds = decoded_seconds(&direct.bytes().await.expect("wav"), "wav");
    assert!(direct_seconds > 2.0, "{direct_seconds}");
    for format in ["wav", "mp3", "opus", "aac", "flac", "pcm"] {
        let (status, headers, audio) = speak(
            &http,
            &url,
            json!({"model": "team-piper", "input": text, "voice": "alloy", "response_format": format}),
        )
        .await;
        assert_eq!(status, 200, "{format}: {}", String::from_utf8_lossy(&audio));
        assert_eq!(
            headers["content-type"],
            voice::audio::AudioFormat::parse(format)
                .expect("format")
                .content_type()
        );
        // Piper draws its phoneme lengths with noise: the same text is about as long.
        let seconds = decoded_seconds(&audio, format);
        assert!(
            (seconds - direct_seconds).abs() < 0.2 * direct_seconds,
            "{format}: {seconds} s against {direct_seconds} s"
        );
    }
    // Streamed, and twice as fast.
    let (status, _, streamed) = speak(
        &http,
        &url,
        json!({"model": "team-piper", "input": text, "response_format": "mp3", "streaming": true, "speed": 2.0}),
    )
    .await;
    assert_eq!(status, 200);
    let fast = decoded_seconds(&streamed, "mp3");
    // Piper shortens the phonemes, not the pauses: well under the time, if not half.
    assert!(fast < 0.75 * direct_seconds, "{fast} s at twice the speed");
    // The gateway lists the server's voice.
    let voices: Value = http
        .get(format!("{url}/v1/audio/voices?model=team-piper"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(voices.to_string().contains("en_US-joe-medium"), "{voices}");

    // The server goes away: a clear error in the API's shape, not a hang or a cut stream.
    engine.stop();
    let (status, _, body) = speak(
        &http,
        &url,
        json!({"model": "team-piper", "input": text, "response_format": "mp3"}),
    )
    .await;
    assert!(status >= 500, "{status}");
    let error: Value = serde_json::from_slice(&body).expect("an error body");
    assert!(error["error"]["message"].is_string(), "{error}");
}
