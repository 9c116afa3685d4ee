//! What a call does, independent of the protocol that carries it. Which service it needs,
//! whether it names a voice and whether it costs tokens are properties of the operation, so
//! every protocol gets the same checks and charges.

use smai_core::Service;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Whole text to audio (a file, or chunks as each sentence is ready).
    Speech,
    /// Text streamed in piece by piece, audio out per sentence (live TTS sessions).
    SpeechStream,
    /// An uploaded file to text.
    Transcription,
    /// An uploaded file to English text.
    Translation,
    /// Audio streamed in, partial and final text out (live ASR sessions).
    LiveTranscription,
    ListModels,
    ListVoices,
}

/// How an operation is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charging {
    /// One request, no tokens: admitted as soon as the call is authorised.
    RequestOnly,
    /// One request plus a cost known once the input is read (characters, audio seconds):
    /// admitted then, all limits together.
    Tokens,
    /// One request at the start, then tokens chunk by chunk as the stream goes.
    Stream,
}

impl Operation {
    /// The service a key must grant (listing models needs none: it shows what the key may use).
    pub fn service(self) -> Option<Service> {
        match self {
            Self::Speech | Self::SpeechStream | Self::ListVoices => Some(Service::Tts),
            Self::Transcription | Self::Translation | Self::LiveTranscription => Some(Service::Asr),
            Self::ListModels => None,
        }
    }

    pub fn charging(self) -> Charging {
        match self {
            Self::Speech | Self::Transcription | Self::Translation => Charging::Tokens,
            Self::SpeechStream | Self::LiveTranscription => Charging::Stream,
            Self::ListModels | Self::ListVoices => Charging::RequestOnly,
        }
    }

    /// Whether the call names a voice that the key must be allowed before any work.
    pub fn uses_voice(self) -> bool {
        matches!(self, Self::Speech | Self::SpeechStream)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Speech => "speech",
            Self::SpeechStream => "speech_stream",
            Self::Transcription => "transcription",
            Self::Translation => "translation",
            Self::LiveTranscription => "live_transcription",
            Self::ListModels => "list_models",
            Self::ListVoices => "list_voices",
        }
    }
}
