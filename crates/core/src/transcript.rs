//! A finished transcript and its renderings: text, json, verbose_json, srt and vtt, as
//! OpenAI's transcription API answers them. Shared by every protocol and the command line.

use crate::{Error, Segment, Task, Word};
use serde_json::json;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
    VerboseJson,
    Srt,
    Vtt,
}

impl OutputFormat {
    pub const NAMES: [&'static str; 5] = ["json", "text", "srt", "vtt", "verbose_json"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
            Self::VerboseJson => "verbose_json",
            Self::Srt => "srt",
            Self::Vtt => "vtt",
        }
    }
}

impl FromStr for OutputFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "json" => Self::Json,
            "text" => Self::Text,
            "srt" => Self::Srt,
            "vtt" => Self::Vtt,
            "verbose_json" => Self::VerboseJson,
            other => {
                return Err(Error::invalid(format!(
                    "response_format {other:?} is not supported; use json, text, srt, vtt or verbose_json"
                )))
            }
        })
    }
}

/// A finished transcription of one file.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub language: String,
    pub duration: f64,
    pub task: Task,
    pub segments: Vec<Segment>,
}

impl Transcript {
    /// Every word of every segment (empty unless word timestamps were asked for).
    pub fn words(&self) -> Vec<&Word> {
        self.segments.iter().flat_map(|s| &s.words).collect()
    }

    pub fn has_words(&self) -> bool {
        self.segments.iter().any(|s| !s.words.is_empty())
    }

    pub fn text(&self) -> String {
        self.segments.iter().map(|s| s.text.as_str()).collect::<String>().trim().to_string()
    }
}

/// OpenAI numbers verbose_json segments from 0, in order.
fn numbered_from_zero(segments: &[Segment]) -> Vec<Segment> {
    segments.iter().enumerate().map(|(id, s)| Segment { id, ..s.clone() }).collect()
}

fn clock(seconds: f64, decimal: char) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}{decimal}{ms:03}")
}

pub fn render(t: &Transcript, format: OutputFormat) -> String {
    match format {
        // One line per input file.
        OutputFormat::Text => t.text().replace('\n', " "),
        OutputFormat::Json if t.has_words() => json!({ "text": t.text(), "words": t.words() }).to_string(),
        OutputFormat::Json => json!({ "text": t.text() }).to_string(),
        OutputFormat::VerboseJson => {
            let mut v = json!({
                "task": t.task,
                "language": t.language,
                "duration": t.duration,
                "text": t.text(),
                "segments": numbered_from_zero(&t.segments),
            });
            if t.has_words() {
                v["words"] = json!(t.words());
            }
            v.to_string()
        }
        OutputFormat::Srt => t
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}\n{} --> {}\n{}\n", i + 1, clock(s.start, ','), clock(s.end, ','), s.text.trim()))
            .collect::<Vec<_>>()
            .join("\n"),
        OutputFormat::Vtt => {
            let cues: String = t
                .segments
                .iter()
                .map(|s| format!("{} --> {}\n{}\n\n", clock(s.start, '.'), clock(s.end, '.'), s.text.trim()))
                .collect();
            format!("WEBVTT\n\n{cues}").trim_end().to_string() + "\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: usize, start: f64, end: f64, text: &str) -> Segment {
        Segment {
            id,
            start,
            end,
            text: text.into(),
            tokens: vec![],
            temperature: 0.0,
            avg_logprob: -0.2,
            compression_ratio: 1.1,
            no_speech_prob: 0.01,
            words: vec![],
        }
    }

    #[test]
    fn renders_subtitles_and_text() {
        let t = Transcript {
            language: "en".into(),
            duration: 3725.5,
            task: Task::Transcribe,
            segments: vec![seg(1, 0.0, 1.5, " Hello."), seg(2, 3723.25, 3725.5, " World.")],
        };
        assert_eq!(render(&t, OutputFormat::Text), "Hello. World.");
        assert_eq!(
            render(&t, OutputFormat::Srt),
            "1\n00:00:00,000 --> 00:00:01,500\nHello.\n\n2\n01:02:03,250 --> 01:02:05,500\nWorld.\n"
        );
        assert!(render(&t, OutputFormat::Vtt).starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello.\n"));
        let v: serde_json::Value = serde_json::from_str(&render(&t, OutputFormat::VerboseJson)).unwrap();
        assert_eq!(v["task"], "transcribe");
        assert_eq!(v["segments"][1]["start"], 3723.25);
        assert_eq!((v["segments"][0]["id"].as_u64(), v["segments"][1]["id"].as_u64()), (Some(0), Some(1)));
        assert!(v.get("words").is_none());
    }

    #[test]
    fn json_formats_carry_words_when_present() {
        let mut s = seg(1, 0.0, 1.0, " Hi there.");
        s.words = vec![
            Word { word: " Hi".into(), start: 0.0, end: 0.4, probability: 0.9 },
            Word { word: " there.".into(), start: 0.4, end: 1.0, probability: 0.8 },
        ];
        let t = Transcript { language: "en".into(), duration: 1.0, task: Task::Transcribe, segments: vec![s] };
        let v: serde_json::Value = serde_json::from_str(&render(&t, OutputFormat::VerboseJson)).unwrap();
        assert_eq!(v["words"][1]["word"], " there.");
        assert_eq!(v["segments"][0]["words"][0]["end"], 0.4);
        let j: serde_json::Value = serde_json::from_str(&render(&t, OutputFormat::Json)).unwrap();
        assert_eq!(j["words"][0]["start"], 0.0);
        assert_eq!(j["text"], "Hi there.");
    }
}
