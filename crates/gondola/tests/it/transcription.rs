//! Transcription against the real binary and the real Whisper tiny.en: speech from the real
//! voice is transcribed back to its words in every response format and from every audio
//! format, through OpenAI's and Venice's shapes; what is not audio is the client's 400 with
//! the process up; nothing of the words reaches the logs; and each second is charged at the
//! model's price.

use std::process::Command;

use serde_json::{Value, json};

use crate::economy::{decimal_units, staked_account_key};
use crate::support::{binary, client, gateway, serve, typed_provider};

const TRANSCRIPTION_MODEL: &str = "whisper-tiny-en";
const ADMIN_SECRET: &str = "sk-transcription-operator";
const TEXT: &str = "The weather is lovely today. We walked to the river and watched the boats.";

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Word error rate of `heard` against `said`: edits over the words said.
fn word_error_rate(said: &str, heard: &str) -> f64 {
    let (said, heard) = (words(said), words(heard));
    let mut previous: Vec<usize> = (0..=heard.len()).collect();
    for (i, said_word) in said.iter().enumerate() {
        let mut current = vec![i + 1; heard.len() + 1];
        for (j, heard_word) in heard.iter().enumerate() {
            current[j + 1] = (previous[j + 1] + 1)
                .min(current[j] + 1)
                .min(previous[j] + usize::from(said_word != heard_word));
        }
        previous = current;
    }
    previous[heard.len()] as f64 / said.len().max(1) as f64
}

async fn speech(http: &reqwest::Client, url: &str, format: &str) -> Vec<u8> {
    let response = http
        .post(format!("{url}/v1/audio/speech"))
        .json(&json!({"input": TEXT, "response_format": format}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("audio").to_vec()
}

async fn transcribe(
    http: &reqwest::Client,
    url: &str,
    prefix: &str,
    audio: Vec<u8>,
    fields: &[(&str, &str)],
    key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(audio).file_name("speech.bin"),
    );
    for (name, value) in fields {
        form = form.text((*name).to_owned(), (*value).to_owned());
    }
    let mut request = http
        .post(format!("{url}{prefix}/audio/transcriptions"))
        .multipart(form);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

/// A `verbose_json` answer's words are the words of `TEXT` (as its text is), in order and
/// never overlapping, each inside a segment and inside the audio, "river" well after
/// "weather". (How many segments depends on the pause the voice makes between the sentences,
/// which its noise varies.)
fn check_word_timings(timed: &Value) {
    let duration = timed["duration"].as_f64().expect("duration");
    let segments = timed["segments"].as_array().expect("segments");
    assert!(!segments.is_empty(), "{timed}");
    let words = timed["words"].as_array().expect("words");
    let said: Vec<&str> = words
        .iter()
        .map(|word| word["word"].as_str().expect("word"))
        .collect();
    assert!(word_error_rate(TEXT, &said.join(" ")) < 0.25, "{said:?}");
    let mut last_end = 0.0;
    for word in words {
        let (start, end) = (
            word["start"].as_f64().expect("start"),
            word["end"].as_f64().expect("end"),
        );
        assert!(
            start >= last_end - 1e-6 && end >= start && end <= duration + 0.01,
            "{timed}"
        );
        let inside = segments.iter().any(|segment| {
            segment["start"].as_f64().expect("start") <= start + 1e-6
                && end <= segment["end"].as_f64().expect("end") + 1e-6
        });
        assert!(inside, "{word} is inside a segment: {timed}");
        last_end = end;
    }
    // "weather" is said in the first sentence, "river" in the second.
    let at = |wanted: &str| {
        words
            .iter()
            .find(|word| {
                word["word"]
                    .as_str()
                    .is_some_and(|word| word.eq_ignore_ascii_case(wanted))
            })
            .and_then(|word| word["start"].as_f64())
            .unwrap_or_else(|| panic!("{wanted} is heard: {timed}"))
    };
    assert!(at("weather") + 0.5 < at("river"), "{timed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn speech_is_transcribed_back_to_its_words_in_every_format() {
    let (mut process, url, _dir) = serve(&[], None);
    let http = client();
    let wav = speech(&http, &url, "wav").await;

    // json, the default: the words said.
    let (status, headers, body) = transcribe(
        &http,
        &url,
        "/v1",
        wav.clone(),
        &[("model", "whisper-1")],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-venice-model-id"], TRANSCRIPTION_MODEL);
    let heard: Value = serde_json::from_str(&body).expect("json");
    let text = heard["text"].as_str().expect("text");
    assert!(word_error_rate(TEXT, text) < 0.25, "{text}");

    // From every audio format the voice makes.
    for format in ["mp3", "opus", "aac", "flac"] {
        let audio = speech(&http, &url, format).await;
        let (status, _, body) = transcribe(
            &http,
            &url,
            "/v1",
            audio,
            &[("response_format", "text")],
            None,
        )
        .await;
        assert_eq!(status, 200, "{format}: {body}");
        assert!(word_error_rate(TEXT, &body) < 0.25, "{format}: {body}");
    }

    // verbose_json with segment timings: one segment per sentence (the voice pauses between
    // them), in order, inside the audio's length.
    let (status, _, body) = transcribe(
        &http,
        &url,
        "/v1",
        wav.clone(),
        &[
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "segment"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let verbose: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(verbose["language"], "english");
    let duration = verbose["duration"].as_f64().expect("duration");
    assert!(duration > 2.0, "{verbose}");
    let segments = verbose["segments"].as_array().expect("segments");
    // A segment per utterance: one per sentence when the voice pauses 300 ms or more between
    // them, which its noise does not always do.
    assert!((1..=2).contains(&segments.len()), "{verbose}");
    assert!(
        segments[0]["text"]
            .as_str()
            .expect("text")
            .to_lowercase()
            .contains("weather"),
        "{verbose}"
    );
    assert!(
        segments[segments.len() - 1]["text"]
            .as_str()
            .expect("text")
            .to_lowercase()
            .contains("river"),
        "{verbose}"
    );
    let mut last = 0.0;
    for segment in segments {
        let (start, end) = (
            segment["start"].as_f64().expect("start"),
            segment["end"].as_f64().expect("end"),
        );
        assert!(
            start >= last && end > start && end <= duration + 0.01,
            "{verbose}"
        );
        last = end;
    }
    // Word timings: the words said, in order, each inside its sentence's segment.
    let (status, _, body) = transcribe(
        &http,
        &url,
        "/v1",
        wav.clone(),
        &[
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let timed: Value = serde_json::from_str(&body).expect("json");
    check_word_timings(&timed);

    // SubRip and WebVTT cues.
    let (status, headers, srt) = transcribe(
        &http,
        &url,
        "/v1",
        wav.clone(),
        &[("response_format", "srt")],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-subrip");
    assert!(srt.starts_with("1\n00:00:0"), "{srt}");
    assert!(srt.contains(" --> "));
    let (_, _, vtt) = transcribe(
        &http,
        &url,
        "/v1",
        wav.clone(),
        &[("response_format", "vtt")],
        None,
    )
    .await;
    assert!(vtt.starts_with("WEBVTT\n\n00:00:0"), "{vtt}");

    // Venice's shape: timestamps in the json answer.
    let (status, _, body) = transcribe(
        &http,
        &url,
        "/api/v1",
        wav.clone(),
        &[("model", "openai/whisper-large-v3"), ("timestamps", "true")],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let venice: Value = serde_json::from_str(&body).expect("json");
    assert!(
        venice["timestamps"]["segment"]
            .as_array()
            .is_some_and(|segments| (1..=2).contains(&segments.len())),
        "{venice}"
    );
    assert!(venice["duration"].as_f64().is_some());
    let venice_words = venice["timestamps"]["word"].as_array().expect("words");
    assert!(venice_words.len() >= 10, "{venice}");

    // What is not audio, or not a transcription request: the client's error, the process up.
    let (status, _, body) = transcribe(
        &http,
        &url,
        "/v1",
        b"this is not audio at all".to_vec(),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(error["error"]["param"], "file");
    let (status, _, body) = transcribe(
        &http,
        &url,
        "/v1",
        wav.clone(),
        &[("response_format", "mp3")],
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let not_multipart = http
        .post(format!("{url}/v1/audio/transcriptions"))
        .json(&json!({"file": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(not_multipart.status(), 415);
    let too_large = transcribe(&http, &url, "/v1", vec![0u8; 26 * 1024 * 1024], &[], None).await;
    assert_eq!(too_large.0, 413);
    let (status, _, _) = transcribe(
        &http,
        &url,
        "/v1",
        wav.clone(),
        &[("model", "all-minilm-l6-v2")],
        None,
    )
    .await;
    assert_eq!(status, 400);

    // The command line.
    let file = tempfile::NamedTempFile::with_suffix(".wav").expect("temp file");
    std::fs::write(file.path(), &wav).expect("write");
    let output = Command::new(binary())
        .args(["transcribe", "--gateway", &url])
        .arg(file.path())
        .output()
        .expect("run gondola transcribe");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(word_error_rate(TEXT, &String::from_utf8_lossy(&output.stdout)) < 0.25);

    // Still up; nothing of the words in the logs.
    let (status, _, _) = transcribe(&http, &url, "/v1", wav, &[], None).await;
    assert_eq!(status, 200);
    process.kill();
    let log = process.stderr();
    assert!(
        log.contains("transcription"),
        "the request's log line is there"
    );
    assert!(!log.contains("river"), "{log}");
    assert!(!log.contains("boats"));
}

#[tokio::test(flavor = "multi_thread")]
async fn transcription_is_charged_per_second_heard_at_the_models_price() {
    // $1,000 per million seconds: a thousandth of a dollar per second.
    let config = format!(
        "{}\n[gateway.models.pricing.{TRANSCRIPTION_MODEL}]\ninput_usd_per_million = \"1000\"\noutput_usd_per_million = \"0\"\n",
        crate::economy::ledger_config("1", ADMIN_SECRET, "1")
    );
    let (_process, url, dir) = serve(&[], Some(&config));
    let (key, _) = staked_account_key(&url, dir.path(), "user", "100");
    let http = client();
    let wav = {
        let response = http
            .post(format!("{url}/v1/audio/speech"))
            .bearer_auth(&key)
            .json(&json!({"input": TEXT, "response_format": "wav"}))
            .send()
            .await
            .expect("send");
        response.bytes().await.expect("audio").to_vec()
    };
    let data = u32::from_le_bytes(wav[40..44].try_into().expect("4")) as f64;
    let rate = f64::from(u32::from_le_bytes(wav[24..28].try_into().expect("4")));
    let seconds = (data / 2.0 / rate).ceil() as u128;
    let (status, headers, _) = transcribe(&http, &url, "/v1", wav.clone(), &[], Some(&key)).await;
    assert_eq!(status, 200);
    let before = decimal_units(headers["x-venice-balance-diem"].to_str().expect("text"));
    let (status, headers, _) = transcribe(&http, &url, "/v1", wav, &[], Some(&key)).await;
    assert_eq!(status, 200);
    let after = decimal_units(headers["x-venice-balance-diem"].to_str().expect("text"));
    // The balance each answer reports is from before its request.
    let charged = before - after;
    assert!(
        charged == seconds * 10u128.pow(15) || charged == (seconds + 1) * 10u128.pow(15),
        "{charged} for {seconds} s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_fronts_an_openai_compatible_transcription_engine_and_fails_over() {
    // The engine: another Gondola's OpenAI-compatible /v1/audio/transcriptions.
    let (mut engine, engine_url, _engine_dir) = serve(&[], None);
    let (_gateway, url, _dir) = gateway("");
    let engine_base = format!("{engine_url}/v1");
    let _upstream = typed_provider(
        &url,
        "team-whisper",
        "asr",
        &["--upstream", &engine_base, "--model", "whisper-1"],
    );
    let http = client();
    let mp3 = speech(&http, &engine_url, "mp3").await;
    let asked = [
        ("model", "team-whisper"),
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
    ];
    let (status, headers, body) = transcribe(&http, &url, "/v1", mp3.clone(), &asked, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-venice-model-id"], "team-whisper");
    let fronted: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(fronted["language"], "english");
    assert!(word_error_rate(TEXT, fronted["text"].as_str().expect("text")) < 0.25);
    check_word_timings(&fronted);
    // The engine's own answer to the same upload: the front adds and loses nothing.
    let (_, _, direct) = transcribe(
        &http,
        &engine_url,
        "/v1",
        mp3.clone(),
        &[
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
        ],
        None,
    )
    .await;
    let direct: Value = serde_json::from_str(&direct).expect("json");
    assert_eq!(fronted["text"], direct["text"]);
    assert_eq!(fronted["words"], direct["words"]);
    // Plain text through the front.
    let (status, _, text) = transcribe(
        &http,
        &url,
        "/v1",
        mp3.clone(),
        &[("model", "team-whisper"), ("response_format", "text")],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(text.trim(), direct["text"].as_str().expect("text"));

    // A second provider of the model with the embedded Whisper; the engine goes away without
    // a word, and transcription goes on.
    let _embedded = typed_provider(
        &url,
        "team-whisper",
        "asr",
        &["--model", TRANSCRIPTION_MODEL],
    );
    engine.kill();
    for _ in 0..3 {
        let (status, _, body) = transcribe(&http, &url, "/v1", mp3.clone(), &asked, None).await;
        assert_eq!(status, 200, "{body}");
        let heard: Value = serde_json::from_str(&body).expect("json");
        check_word_timings(&heard);
    }
}
