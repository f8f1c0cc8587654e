//! Audio out: 16-bit mono PCM from the voice, written as the format asked for. WAV is written
//! here (a 44-byte header); every other format is encoded by FFmpeg, run as a separate process
//! that reads PCM on its standard input and writes the encoded stream on its output, so that a
//! streamed reply is encoded as it is spoken.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::VoiceError;

/// Sample rate of `pcm` replies (OpenAI's: 24 kHz, 16-bit signed little-endian, mono).
pub const PCM_SAMPLE_RATE: u32 = 24_000;
/// Bytes read from FFmpeg at a time.
const READ_BYTES: usize = 16 * 1024;

/// The formats of the speech API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Mp3,
    Opus,
    Aac,
    Flac,
    Wav,
    Pcm,
}

impl AudioFormat {
    pub const ALL: [Self; 6] = [
        Self::Mp3,
        Self::Opus,
        Self::Aac,
        Self::Flac,
        Self::Wav,
        Self::Pcm,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|format| format.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
            Self::Aac => "aac",
            Self::Flac => "flac",
            Self::Wav => "wav",
            Self::Pcm => "pcm",
        }
    }

    /// The reply's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Mp3 => "audio/mpeg",
            Self::Opus => "audio/opus",
            Self::Aac => "audio/aac",
            Self::Flac => "audio/flac",
            Self::Wav => "audio/wav",
            Self::Pcm => "audio/pcm",
        }
    }

    /// FFmpeg's output options for the format; `None` for WAV, written here.
    fn ffmpeg_output(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Mp3 => Some(&["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"]),
            // Ogg Opus, as OpenAI sends it.
            Self::Opus => Some(&["-c:a", "libopus", "-b:a", "32k", "-f", "ogg"]),
            Self::Aac => Some(&["-c:a", "aac", "-b:a", "64k", "-f", "adts"]),
            Self::Flac => Some(&["-c:a", "flac", "-f", "flac"]),
            Self::Pcm => Some(&["-ar", "24000", "-c:a", "pcm_s16le", "-f", "s16le"]),
            Self::Wav => None,
        }
    }
}

/// A WAV header for mono 16-bit PCM at `sample_rate`; `samples` unknown (a stream) writes the
/// largest sizes, which players read as "until the end".
pub fn wav_header(sample_rate: u32, samples: Option<usize>) -> Vec<u8> {
    let data_bytes = samples.map_or(u32::MAX - 36, |samples| {
        u32::try_from(samples.saturating_mul(2)).unwrap_or(u32::MAX - 36)
    });
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&data_bytes.saturating_add(36).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // PCM
    header.extend_from_slice(&1u16.to_le_bytes()); // mono
    header.extend_from_slice(&sample_rate.to_le_bytes());
    header.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_bytes.to_le_bytes());
    header
}

/// The sample rate and samples of a mono 16-bit PCM WAV file (what Piper's server answers
/// with), or why it is not one.
pub fn read_wav(bytes: &[u8]) -> Result<(u32, Vec<i16>), String> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|error| format!("not a WAV file: {error}"))?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(format!(
            "the WAV is {} channel(s) of {}-bit samples, not mono 16-bit PCM",
            spec.channels, spec.bits_per_sample
        ));
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("the WAV's samples are cut short: {error}"))?;
    Ok((spec.sample_rate, samples))
}

pub fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|sample| sample.to_le_bytes())
        .collect()
}

/// Encodes the PCM chunks arriving on `pcm` (at `sample_rate`) as `format`, sending the
/// encoded bytes on `out` as they come. Ends when `pcm` closes and everything is written; a
/// closed `out` (the client left) stops the encoder.
pub async fn encode(
    ffmpeg: &Path,
    format: AudioFormat,
    sample_rate: u32,
    mut pcm: mpsc::Receiver<Vec<i16>>,
    out: mpsc::Sender<Result<Vec<u8>, VoiceError>>,
) {
    let Some(options) = format.ffmpeg_output() else {
        if out.send(Ok(wav_header(sample_rate, None))).await.is_err() {
            return;
        }
        while let Some(chunk) = pcm.recv().await {
            if out.send(Ok(pcm_bytes(&chunk))).await.is_err() {
                return;
            }
        }
        return;
    };
    let rate = sample_rate.to_string();
    let spawned = tokio::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "s16le", "-ar", &rate, "-ac", "1", "-i", "pipe:0"])
        .args(options)
        .arg("pipe:1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            let _ = out
                .send(Err(VoiceError::Encoder(format!(
                    "cannot run {}: {error}",
                    ffmpeg.display()
                ))))
                .await;
            return;
        }
    };
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = out
            .send(Err(VoiceError::Encoder("FFmpeg has no pipes".into())))
            .await;
        return;
    };
    // Fed from its own task, so that a client who leaves (the drain stops reading) cannot
    // leave the feeder blocked on a full pipe: it is aborted and FFmpeg killed.
    let feeding = tokio::spawn(async move {
        while let Some(chunk) = pcm.recv().await {
            stdin.write_all(&pcm_bytes(&chunk)).await?;
        }
        stdin.shutdown().await
    });
    let mut buffer = vec![0u8; READ_BYTES];
    let drained = loop {
        match stdout.read(&mut buffer).await {
            Ok(0) => break Ok(true),
            Ok(read) => {
                if out.send(Ok(buffer[..read].to_vec())).await.is_err() {
                    break Ok(false);
                }
            }
            Err(error) => break Err(error),
        }
    };
    let failure = match drained {
        Ok(false) => {
            feeding.abort();
            let _ = child.kill().await;
            None
        }
        Err(error) => {
            feeding.abort();
            let _ = child.kill().await;
            Some(format!("FFmpeg failed: {error}"))
        }
        Ok(true) => match (feeding.await, child.wait().await) {
            (Ok(Ok(())), Ok(status)) if status.success() => None,
            (Ok(Err(error)), _) => Some(format!("FFmpeg failed: {error}")),
            (Err(error), _) => Some(format!("FFmpeg's feeder failed: {error}")),
            (_, Ok(status)) => Some(format!("FFmpeg exited with {status}")),
            (_, Err(error)) => Some(format!("FFmpeg failed: {error}")),
        },
    };
    if let Some(failure) = failure {
        let _ = out.send(Err(VoiceError::Encoder(failure))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wav_header_describes_mono_sixteen_bit_pcm() {
        let header = wav_header(22_050, Some(100));
        assert_eq!(header.len(), 44);
        assert_eq!(&header[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(header[4..8].try_into().expect("4")), 236);
        assert_eq!(
            u32::from_le_bytes(header[24..28].try_into().expect("4")),
            22_050
        );
        assert_eq!(
            u32::from_le_bytes(header[40..44].try_into().expect("4")),
            200
        );
        for format in AudioFormat::ALL {
            assert_eq!(AudioFormat::parse(format.name()), Some(format));
        }
        assert_eq!(AudioFormat::parse("ogg"), None);
    }

    #[test]
    fn a_wav_written_here_reads_back_and_other_bytes_are_refused() {
        let samples: Vec<i16> = (0..1000)
            .map(|index| (index * 31 % 2000 - 1000) as i16)
            .collect();
        let mut wav = wav_header(22_050, Some(samples.len()));
        wav.extend(pcm_bytes(&samples));
        assert_eq!(read_wav(&wav), Ok((22_050, samples)));
        assert!(read_wav(b"<!doctype html>").is_err());
        assert!(read_wav(&wav[..30]).is_err());
    }
}
