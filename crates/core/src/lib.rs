//! smai-core: the types every other crate agrees on. No candle, axum or tonic here, so
//! server and auth tests can run against small fake engines.

pub mod clock;
pub mod engine;
pub mod error;
pub mod principal;
pub mod text_stream;
pub mod transcript;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use engine::*;
pub use error::{Error, ErrorCode};
pub use principal::{Principal, Service, Tier, VoiceAccess};
pub use transcript::{OutputFormat, Transcript};
