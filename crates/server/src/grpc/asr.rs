//! `smai.v1.SpeechRecognition` over the service core: Recognize runs REST's recognition of a
//! file; StreamingRecognize runs the shared live session (charged per chunk as it arrives),
//! fed by a spawned task through a bounded channel so a client that goes away is noticed.

use super::handler::{next_message, required, respond, Handler, Outbound};
use super::proto::speech_event::Type as SpeechEventType;
use super::proto::speech_recognition_server::SpeechRecognition;
use super::proto::streaming_recognize_request::Request as StreamRequest;
use super::proto::streaming_recognize_response::Response as StreamResponse;
use super::proto::{
    AudioEncoding, Control, ListModelsRequest, ListModelsResponse, Model, RecognitionConfig, RecognizeRequest,
    RecognizeResponse, Segment, SpeechEvent, StreamingRecognitionResult, StreamingRecognizeRequest,
    StreamingRecognizeResponse, VadConfig, WordInfo,
};
use crate::service::live::{
    LiveAudio, LiveEvents, LiveRecognition, LiveUpdate, PcmEncoding, SpeechTracker, VadRequest,
};
use crate::service::{recognition, Service};
use smai_core::{Error, ErrorCode, Task, TranscribeOptions, TranscriptEvent};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub struct SpeechRecognitionService {
    pub service: Service,
    /// The REST upload limit, which a Recognize message's audio may not pass either.
    pub max_audio_bytes: usize,
}

type StreamResponses = ReceiverStream<Result<StreamingRecognizeResponse, Status>>;

#[tonic::async_trait]
impl SpeechRecognition for SpeechRecognitionService {
    async fn recognize(&self, request: Request<RecognizeRequest>) -> Result<Response<RecognizeResponse>, Status> {
        let (handler, message) = Handler::of(request)?;
        let answer = async {
            if message.audio.is_empty() {
                return Err(Error::invalid("audio is empty"));
            }
            if message.audio.len() > self.max_audio_bytes {
                return Err(Error::new(
                    ErrorCode::PayloadTooLarge,
                    format!("audio is {} bytes; at most {} are accepted", message.audio.len(), self.max_audio_bytes),
                ));
            }
            let options = file_options(message.config.unwrap_or_default())?;
            let mut recognition = recognition::start(&handler.call, message.audio, options).await?;
            let mut segments = Vec::new();
            while let Some(event) = recognition.events.recv().await {
                if let TranscriptEvent::Segment(segment) = event? {
                    segments.push(segment_message(segment));
                }
            }
            let text = segments.iter().map(|s| s.text.as_str()).collect::<String>().trim().to_owned();
            Ok(RecognizeResponse {
                text,
                segments,
                language: recognition.language,
                duration_seconds: recognition.duration,
            })
        };
        respond(&handler, answer.await)
    }

    type StreamingRecognizeStream = StreamResponses;

    async fn streaming_recognize(
        &self,
        request: Request<Streaming<StreamingRecognizeRequest>>,
    ) -> Result<Response<StreamResponses>, Status> {
        let (handler, mut requests) = Handler::of(request)?;
        let opened = async {
            let config = match next_request(&mut requests).await? {
                Some(StreamRequest::Config(config)) => config,
                _ => return Err(Error::invalid("the first message must be the streaming config")),
            };
            let audio =
                LiveAudio { encoding: encoding_of(config.encoding)?, sample_rate: rate_of(config.sample_rate_hz) };
            let recognition = config.config.unwrap_or_default();
            let words = recognition.word_timestamps;
            let mut options = live_options(recognition)?;
            let vad = vad_request(config.vad.unwrap_or_default());
            options.live_vad = handler.call.with(|c| vad.resolve(c.transcriber()?.as_ref()))?;
            // No interim results asked: no partial decoding either.
            options.finals_only = !config.interim_results;
            let (session, events) = LiveRecognition::open(&handler.call, options, audio)?;
            Ok((session, events, Settings { interim: config.interim_results, words }))
        };
        let (session, events, settings) = match opened.await {
            Ok(opened) => opened,
            Err(error) => return Err(handler.fail(error)),
        };
        let (outbound, responses) = Outbound::channel(&handler);
        tokio::spawn(run_streaming(requests, session, events, settings, outbound));
        Ok(Response::new(responses))
    }

    async fn list_models(&self, request: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        let (handler, _) = Handler::of(request)?;
        let models = handler.call.with(|c| Ok(self.service.usable_models(c.principal())));
        let models = models.map(|models| ListModelsResponse {
            models: models
                .into_iter()
                .map(|m| Model { id: m.id, languages: m.languages, multilingual: m.multilingual })
                .collect(),
        });
        respond(&handler, models)
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    interim: bool,
    words: bool,
}

fn file_options(config: RecognitionConfig) -> Result<TranscribeOptions, Error> {
    let task = if config.translate { Task::Translate } else { Task::Transcribe };
    let mut options = live_options(config)?;
    options.task = task;
    if task == Task::Translate {
        options.language = None;
    }
    Ok(options)
}

fn live_options(config: RecognitionConfig) -> Result<TranscribeOptions, Error> {
    if let Some(t) = config.temperature.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(Error::invalid(format!("temperature must be between 0 and 1, not {t}")));
    }
    let non_empty = |s: String| Some(s).filter(|s| !s.trim().is_empty());
    Ok(TranscribeOptions {
        model: non_empty(config.model),
        language: non_empty(config.language),
        prompt: non_empty(config.prompt),
        temperature: config.temperature,
        word_timestamps: config.word_timestamps,
        ..Default::default()
    })
}

fn vad_request(config: VadConfig) -> VadRequest {
    VadRequest {
        mode: Some(config.mode).filter(|m| !m.is_empty()),
        threshold: config.threshold,
        min_silence_ms: config.min_silence_ms,
        speech_pad_ms: config.speech_pad_ms,
        max_utterance_s: config.max_utterance_s.map(f64::from),
    }
}

fn encoding_of(value: i32) -> Result<PcmEncoding, Error> {
    match AudioEncoding::try_from(value) {
        Ok(AudioEncoding::Unspecified | AudioEncoding::LinearPcm) => Ok(PcmEncoding::S16le),
        Ok(AudioEncoding::PcmF32le) => Ok(PcmEncoding::F32le),
        Ok(AudioEncoding::Mulaw) => Ok(PcmEncoding::Mulaw),
        Ok(AudioEncoding::Alaw) => Ok(PcmEncoding::Alaw),
        Err(_) => Err(Error::invalid(format!("unknown audio encoding {value}"))),
    }
}

fn rate_of(hz: u32) -> u32 {
    if hz == 0 {
        16_000
    } else {
        hz
    }
}

fn ms(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1000.0).round() as u64
}

fn words_of(words: Vec<smai_core::Word>) -> Vec<WordInfo> {
    words
        .into_iter()
        .map(|w| WordInfo { word: w.word, start_ms: ms(w.start), end_ms: ms(w.end), probability: w.probability })
        .collect()
}

fn segment_message(segment: smai_core::Segment) -> Segment {
    Segment {
        id: segment.id as u32,
        text: segment.text,
        start_ms: ms(segment.start),
        end_ms: ms(segment.end),
        avg_logprob: segment.avg_logprob,
        no_speech_prob: segment.no_speech_prob,
        words: words_of(segment.words),
    }
}

async fn next_request(requests: &mut Streaming<StreamingRecognizeRequest>) -> Result<Option<StreamRequest>, Error> {
    next_message(requests).await?.map(|m| required(m.request)).transpose()
}

/// Audio in until the client half-closes, events out until the session has said everything.
async fn run_streaming(
    mut requests: Streaming<StreamingRecognizeRequest>,
    session: LiveRecognition,
    mut events: LiveEvents,
    settings: Settings,
    outbound: Outbound<StreamingRecognizeResponse>,
) {
    let mut session = Some(session);
    let mut tracker = SpeechTracker::default();
    let result: Result<(), Error> = async {
        loop {
            tokio::select! {
                request = next_request(&mut requests), if session.is_some() => {
                    let live = session.as_mut().expect("open while reading");
                    match request? {
                        Some(StreamRequest::Audio(bytes)) => live.feed(&bytes).await?,
                        Some(StreamRequest::Control(c)) if c == Control::Commit as i32 => live.commit().await?,
                        Some(StreamRequest::Control(c)) => return Err(Error::invalid(format!("unknown control {c}"))),
                        Some(StreamRequest::Config(_)) => return Err(Error::invalid("the config comes first, and once")),
                        None => session.take().expect("open").finish().await?,
                    }
                }
                event = outbound.until_closed(events.recv()) => {
                    let Some(event) = event? else {
                        // The session has said everything: the speech of its last utterance stops.
                        if let Some(message) = tracker.close().and_then(|u| response_of(u, settings)) {
                            outbound.send(message).await?;
                        }
                        return Ok(());
                    };
                    for update in tracker.updates(event?) {
                        if let Some(message) = response_of(update, settings) {
                            outbound.send(message).await?;
                        }
                    }
                }
            }
        }
    }
    .await;
    outbound.end(result).await;
}

fn response_of(update: LiveUpdate, settings: Settings) -> Option<StreamingRecognizeResponse> {
    let event = |kind: SpeechEventType, utterance, at| {
        StreamResponse::SpeechEvent(SpeechEvent { r#type: kind as i32, utterance, offset_ms: ms(at) })
    };
    let response = match update {
        LiveUpdate::SpeechStarted { utterance, at } => event(SpeechEventType::Started, utterance, at),
        LiveUpdate::SpeechStopped { utterance, at } => event(SpeechEventType::Stopped, utterance, at),
        LiveUpdate::Partial { .. } if !settings.interim => return None,
        LiveUpdate::Partial { utterance, start, end, text, stable_text } => {
            let stability = if text.is_empty() { 0.0 } else { stable_text.len() as f32 / text.len() as f32 };
            StreamResponse::Result(StreamingRecognitionResult {
                utterance,
                text,
                stable_text,
                is_final: false,
                stability,
                start_ms: ms(start),
                end_ms: ms(end),
                words: Vec::new(),
                language: String::new(),
            })
        }
        LiveUpdate::Final { utterance, segment, language } => StreamResponse::Result(StreamingRecognitionResult {
            utterance,
            stable_text: segment.text.clone(),
            text: segment.text,
            is_final: true,
            stability: 1.0,
            start_ms: ms(segment.start),
            end_ms: ms(segment.end),
            words: if settings.words { words_of(segment.words) } else { Vec::new() },
            language,
        }),
    };
    Some(StreamingRecognizeResponse { response: Some(response) })
}
