//! `smai.v1.TextToSpeech` over the service core: the same checks, charges and engines as
//! REST's speech route; streamed answers are fed by a spawned task through a bounded channel,
//! so a client that goes away is noticed and its call (slot, usage row) ends.

use super::handler::{next_message, required, respond, Handler, Outbound};
use super::proto::synthesize_online_request::Request as OnlineRequest;
use super::proto::text_to_speech_server::TextToSpeech;
use super::proto::{
    AudioChunk, ListVoicesRequest, ListVoicesResponse, SynthesizeOnlineRequest, SynthesizeRequest, SynthesizeResponse,
    Voice,
};
use crate::service::live::LiveSpeech;
use crate::service::speech::{self, ChunkEncoder, SpeechInput};
use crate::service::Service;
use smai_core::{AudioStream, Error, SpeechEvent, SpeechOptions};
use smai_inference::audio::encode::AudioFormat;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub struct TextToSpeechService {
    pub service: Service,
}

type AudioChunks = ReceiverStream<Result<AudioChunk, Status>>;

#[tonic::async_trait]
impl TextToSpeech for TextToSpeechService {
    async fn synthesize(&self, request: Request<SynthesizeRequest>) -> Result<Response<SynthesizeResponse>, Status> {
        let (handler, message) = Handler::of(request)?;
        let answer = async {
            let prepared = speech::prepare(&handler.call, speech_input(&message, AudioFormat::Wav, false))?;
            let (mut stream, format) = prepared.start_whole(&handler.call)?;
            let file = speech::collect_file(&mut stream, format).await?;
            Ok(SynthesizeResponse {
                audio: file.bytes,
                content_type: format.content_type().to_owned(),
                sample_rate_hz: file.sample_rate,
                audio_seconds: file.seconds,
            })
        };
        respond(&handler, answer.await)
    }

    type StreamingSynthesizeStream = AudioChunks;

    async fn streaming_synthesize(&self, request: Request<SynthesizeRequest>) -> Result<Response<AudioChunks>, Status> {
        let (handler, message) = Handler::of(request)?;
        let started = (|| {
            let prepared = speech::prepare(&handler.call, speech_input(&message, AudioFormat::Pcm, true))?;
            let encoder =
                ChunkEncoder::new(prepared.format).ok_or_else(|| Error::internal("format cannot be streamed"))?;
            let (stream, delivered) = prepared.start_streamed(&handler.call)?;
            Ok((stream, encoder, delivered))
        })();
        let (stream, encoder, mut delivered) = match started {
            Ok(started) => started,
            Err(error) => return Err(handler.fail(error)),
        };
        let (outbound, chunks) = Outbound::channel(&handler);
        tokio::spawn(async move {
            let result = send_sentences(stream, encoder, &outbound, |_| delivered.sent_one()).await;
            if result.is_ok() {
                delivered.sent_all();
            }
            outbound.end(result).await;
        });
        Ok(Response::new(chunks))
    }

    type SynthesizeOnlineStream = AudioChunks;

    async fn synthesize_online(
        &self,
        request: Request<Streaming<SynthesizeOnlineRequest>>,
    ) -> Result<Response<AudioChunks>, Status> {
        let (handler, mut requests) = Handler::of(request)?;
        let opened = async {
            let config = match next_online(&mut requests).await? {
                Some(OnlineRequest::Config(config)) => config,
                _ => return Err(Error::invalid("the first message must be the config")),
            };
            let format = speech::parse_format(Some(&config.response_format), AudioFormat::Pcm)?;
            let encoder = ChunkEncoder::new(format)
                .ok_or_else(|| Error::invalid("response_format cannot be streamed; use pcm, wav or mp3"))?;
            let speed = speech::check_speed(Some(config.speed).filter(|s| *s != 0.0))?;
            let (session, events) =
                LiveSpeech::open(&handler.call, SpeechOptions { voice: config.voice, speed, normalize: true })?;
            Ok((session, events, encoder))
        };
        let (session, events, encoder) = match opened.await {
            Ok(opened) => opened,
            Err(error) => return Err(handler.fail(error)),
        };
        let (outbound, chunks) = Outbound::channel(&handler);
        tokio::spawn(run_online(requests, session, events, encoder, outbound));
        Ok(Response::new(chunks))
    }

    async fn list_voices(&self, request: Request<ListVoicesRequest>) -> Result<Response<ListVoicesResponse>, Status> {
        let (handler, _) = Handler::of(request)?;
        let principal = handler.call.with(|c| Ok(c.principal().clone()));
        let voices = principal.map(|principal| {
            let voices = self.service.usable_voices(&principal).into_iter();
            let voices = voices.map(|v| Voice {
                id: v.id,
                language: v.language,
                sample_rate_hz: v.sample_rate,
                quality: v.quality,
            });
            ListVoicesResponse { voices: voices.collect() }
        });
        respond(&handler, voices)
    }
}

fn speech_input(message: &SynthesizeRequest, default_format: AudioFormat, streamed: bool) -> SpeechInput<'_> {
    SpeechInput {
        text: &message.text,
        voice: &message.voice,
        speed: Some(message.speed).filter(|s| *s != 0.0),
        format: Some(message.response_format.as_str()),
        default_format,
        streamed,
    }
}

/// Sends one chunk per sentence of `stream`; `text_of(segment)` names what it speaks.
async fn send_sentences(
    mut stream: AudioStream,
    mut encoder: ChunkEncoder,
    outbound: &Outbound<AudioChunk>,
    mut text_of: impl FnMut(u32) -> String,
) -> Result<(), Error> {
    let mut segment = 0;
    while let Some(chunk) = outbound.until_closed(stream.recv()).await? {
        let chunk = chunk?;
        let seconds = chunk.samples.len() as f64 / f64::from(chunk.sample_rate);
        let audio = encoder.encode(&chunk)?;
        let text = text_of(segment);
        let sample_rate_hz = encoder.sample_rate().unwrap_or(chunk.sample_rate);
        let message = AudioChunk { audio, segment, text, sample_rate_hz, segment_end: true, audio_seconds: seconds };
        outbound.send(message).await?;
        segment += 1;
    }
    Ok(())
}

async fn next_online(requests: &mut Streaming<SynthesizeOnlineRequest>) -> Result<Option<OnlineRequest>, Error> {
    next_message(requests).await?.map(|m| required(m.request)).transpose()
}

/// Text in (charged per piece), audio out per sentence, until the client half-closes and the
/// last sentence is sent, or the client goes away.
async fn run_online(
    mut requests: Streaming<SynthesizeOnlineRequest>,
    session: LiveSpeech,
    mut events: crate::service::live::SpeechEvents,
    mut encoder: ChunkEncoder,
    outbound: Outbound<AudioChunk>,
) {
    let mut session = Some(session);
    let mut pending: Option<(u32, String, Vec<f32>, u32)> = None;
    let result: Result<(), Error> = async {
        loop {
            tokio::select! {
                request = next_online(&mut requests), if session.is_some() => match request? {
                    Some(OnlineRequest::Text(text)) => session.as_ref().map(|s| s.speak(text)).expect("open").await?,
                    Some(OnlineRequest::Flush(_)) => session.as_ref().map(LiveSpeech::flush).expect("open").await?,
                    Some(OnlineRequest::Config(_)) => return Err(Error::invalid("the config comes first, and once")),
                    // Half-close: what is pending is synthesised, then the events end.
                    None => session = None,
                },
                event = outbound.until_closed(events.recv()) => match event? {
                    None => return Ok(()),
                    Some(event) => {
                        if let Some(chunk) = segment_chunk(event?, &mut pending, &mut encoder)? {
                            outbound.send(chunk).await?;
                        }
                    }
                },
            }
        }
    }
    .await;
    outbound.end(result).await;
}

/// Gathers a segment's audio and answers it as one chunk at its end.
fn segment_chunk(
    event: SpeechEvent,
    pending: &mut Option<(u32, String, Vec<f32>, u32)>,
    encoder: &mut ChunkEncoder,
) -> Result<Option<AudioChunk>, Error> {
    match event {
        SpeechEvent::SegmentStart { segment, text } => *pending = Some((segment, text, Vec::new(), 0)),
        SpeechEvent::Audio(chunk) => {
            if let Some((_, _, samples, rate)) = pending.as_mut() {
                samples.extend(chunk.samples);
                *rate = chunk.sample_rate;
            }
        }
        SpeechEvent::SegmentEnd { audio_seconds, .. } => {
            let Some((segment, text, samples, sample_rate)) = pending.take() else { return Ok(None) };
            if sample_rate == 0 {
                return Ok(None);
            }
            let audio = encoder.encode(&smai_core::AudioChunk { samples, sample_rate })?;
            let sample_rate_hz = encoder.sample_rate().unwrap_or(sample_rate);
            return Ok(Some(AudioChunk { audio, segment, text, sample_rate_hz, segment_end: true, audio_seconds }));
        }
        SpeechEvent::Cancelled => *pending = None,
    }
    Ok(None)
}
