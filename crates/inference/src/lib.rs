//! smai-inference: speech models on candle. Whisper ASR and Piper voices land here.

pub mod phonemize;
pub mod tts;
pub mod vits;
