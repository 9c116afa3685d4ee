//! The Wyoming wire format (OHF-Voice/wyoming's `event.py`): a JSON header line with `type`,
//! optional `data`, `data_length` and `payload_length`; then `data_length` bytes of JSON merged
//! over `data`; then `payload_length` bytes of payload. Sizes are bounded before anything is
//! buffered, so a hostile stream costs at most one event's limits.

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest header line accepted (events carry their text in `data`, not in the line).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The longest extra data block (a synthesize's text, a transcribe's names).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;
/// The longest payload (an audio chunk: 4 MiB is 23 s of 16-bit stereo at 44.1 kHz).
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// The protocol version our events say they follow.
pub const VERSION: &str = "1.10.2";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub kind: String,
    pub data: Map<String, Value>,
    pub payload: Vec<u8>,
}

/// Why a stream cannot be read further; the connection answers an `error` and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("header line longer than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong,
    #[error("malformed header: {0}")]
    Malformed(String),
    #[error("{what} of {length} bytes is over the limit of {limit}")]
    TooLarge { what: &'static str, length: u64, limit: usize },
    #[error("the stream ended inside an event")]
    Truncated,
    #[error("reading failed: {0}")]
    Io(String),
}

impl Event {
    pub fn new(kind: &str) -> Self {
        Self { kind: kind.to_owned(), ..Self::default() }
    }

    /// An event with `data` (a JSON object; anything else leaves the data empty).
    pub fn with_data(kind: &str, data: Value) -> Self {
        let data = match data {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Self { kind: kind.to_owned(), data, payload: Vec::new() }
    }

    pub fn with_payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = payload;
        self
    }

    pub fn str(&self, field: &str) -> Option<&str> {
        self.data.get(field).and_then(Value::as_str)
    }
}

/// Reads the next event; `Ok(None)` when the stream ends cleanly between events.
pub async fn read_event<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Event>, WireError> {
    let Some(line) = read_line(reader).await? else { return Ok(None) };
    let header: Map<String, Value> = match serde_json::from_slice(&line) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(WireError::Malformed("the header is not a JSON object".into())),
        Err(e) => return Err(WireError::Malformed(e.to_string())),
    };
    let kind = match header.get("type") {
        Some(Value::String(kind)) if !kind.is_empty() => kind.clone(),
        _ => return Err(WireError::Malformed("the header has no \"type\" string".into())),
    };
    let mut data = match header.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(WireError::Malformed("\"data\" is not an object".into())),
    };
    let data_length = length_field(&header, "data_length", "data", MAX_DATA_BYTES)?;
    if data_length > 0 {
        let extra = read_exact(reader, data_length).await?;
        match serde_json::from_slice(&extra) {
            Ok(Value::Object(more)) => data.extend(more),
            _ => return Err(WireError::Malformed("the data block is not a JSON object".into())),
        }
    }
    let payload_length = length_field(&header, "payload_length", "payload", MAX_PAYLOAD_BYTES)?;
    let payload = if payload_length > 0 { read_exact(reader, payload_length).await? } else { Vec::new() };
    Ok(Some(Event { kind, data, payload }))
}

/// The header line without its newline; `None` at a clean end of the stream.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Vec<u8>>, WireError> {
    let mut line = Vec::new();
    loop {
        let available = reader.fill_buf().await.map_err(|e| WireError::Io(e.to_string()))?;
        if available.is_empty() {
            return if line.is_empty() { Ok(None) } else { Err(WireError::Truncated) };
        }
        let (taken, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        line.extend_from_slice(&available[..taken]);
        reader.consume(taken);
        if line.len() > MAX_HEADER_BYTES + 1 {
            return Err(WireError::HeaderTooLong);
        }
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

fn length_field(
    header: &Map<String, Value>,
    field: &str,
    what: &'static str,
    limit: usize,
) -> Result<usize, WireError> {
    match header.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => {
            let length = value
                .as_u64()
                .ok_or_else(|| WireError::Malformed(format!("{field:?} is not a non-negative integer")))?;
            if length > limit as u64 {
                return Err(WireError::TooLarge { what, length, limit });
            }
            Ok(length as usize)
        }
    }
}

async fn read_exact<R: AsyncBufRead + Unpin>(reader: &mut R, length: usize) -> Result<Vec<u8>, WireError> {
    let mut bytes = vec![0; length];
    match reader.read_exact(&mut bytes).await {
        Ok(_) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Truncated),
        Err(e) => Err(WireError::Io(e.to_string())),
    }
}

/// The bytes of one event: data always goes in the extra block, as the reference writer does.
pub fn encode(event: &Event) -> Vec<u8> {
    let mut header = Map::new();
    header.insert("type".into(), Value::String(event.kind.clone()));
    header.insert("version".into(), Value::String(VERSION.into()));
    let data = (!event.data.is_empty()).then(|| Value::Object(event.data.clone()).to_string().into_bytes());
    if let Some(data) = &data {
        header.insert("data_length".into(), data.len().into());
    }
    if !event.payload.is_empty() {
        header.insert("payload_length".into(), event.payload.len().into());
    }
    let mut bytes = Value::Object(header).to_string().into_bytes();
    bytes.push(b'\n');
    bytes.extend(data.unwrap_or_default());
    bytes.extend_from_slice(&event.payload);
    bytes
}

pub async fn write_event<W: AsyncWrite + Unpin>(writer: &mut W, event: &Event) -> std::io::Result<()> {
    writer.write_all(&encode(event)).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    async fn read_all(bytes: &[u8]) -> Vec<Result<Option<Event>, WireError>> {
        let mut reader = tokio::io::BufReader::new(bytes);
        let mut out = Vec::new();
        loop {
            let next = read_event(&mut reader).await;
            let stop = !matches!(next, Ok(Some(_)));
            out.push(next);
            if stop {
                return out;
            }
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn events_round_trip_and_inline_data_merges_with_the_block() {
        let event = Event::with_data("audio-chunk", json!({"rate": 16000, "width": 2, "channels": 1}))
            .with_payload(vec![1, 2, 3, 4]);
        let mut bytes = encode(&event);
        bytes.extend(b"{\"type\":\"describe\"}\n");
        // Data inline and in the block: the block wins where both name a field.
        let block = br#"{"text":"from block"}"#;
        let header = format!("{{\"type\":\"synthesize\",\"data\":{{\"text\":\"inline\",\"voice\":{{\"name\":\"joe\"}}}},\"data_length\":{}}}\n", block.len());
        bytes.extend(header.as_bytes());
        bytes.extend(block);
        let read = block_on(read_all(&bytes));
        assert_eq!(read[0], Ok(Some(event)));
        assert_eq!(read[1].as_ref().unwrap().as_ref().unwrap().kind, "describe");
        let synthesize = read[2].clone().unwrap().unwrap();
        assert_eq!(synthesize.str("text"), Some("from block"));
        assert_eq!(synthesize.data["voice"]["name"], "joe");
        assert_eq!(read[3], Ok(None));
    }

    #[test]
    fn limits_and_malformed_headers_are_errors() {
        type Expected = fn(&WireError) -> bool;
        let cases: Vec<(Vec<u8>, Expected)> = vec![
            (b"not json\n".to_vec(), |e| matches!(e, WireError::Malformed(_))),
            (b"{\"data\":{}}\n".to_vec(), |e| matches!(e, WireError::Malformed(_))),
            (b"[1,2]\n".to_vec(), |e| matches!(e, WireError::Malformed(_))),
            (b"{\"type\":\"x\",\"payload_length\":-1}\n".to_vec(), |e| matches!(e, WireError::Malformed(_))),
            (b"{\"type\":\"x\",\"payload_length\":99999999999}\n".to_vec(), |e| {
                matches!(e, WireError::TooLarge { .. })
            }),
            (b"{\"type\":\"x\",\"data_length\":5}\n{\"a\"".to_vec(), |e| *e == WireError::Truncated),
            (b"{\"type\":\"x\",\"data_length\":3}\n[1]".to_vec(), |e| matches!(e, WireError::Malformed(_))),
            (b"{\"type\":\"x\"".to_vec(), |e| *e == WireError::Truncated),
            (vec![b'a'; MAX_HEADER_BYTES + 10], |e| *e == WireError::HeaderTooLong),
        ];
        for (bytes, expected) in cases {
            let read = block_on(read_all(&bytes));
            let last = read.last().unwrap().clone().unwrap_err();
            assert!(expected(&last), "{:?}: {last:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(60)]));
        }
    }

    proptest! {
        /// Any bytes, and any cut of a valid stream, end in events, a clean end or an error:
        /// never a panic, never more than the stream holds.
        #[test]
        fn arbitrary_and_truncated_streams_never_panic(noise in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..200) {
            block_on(read_all(&noise));
            let valid = encode(&Event::with_data("transcribe", json!({"language": "en"})).with_payload(vec![7; 50]));
            let read = block_on(read_all(&valid[..cut.min(valid.len())]));
            prop_assert!(read.len() <= 2);
        }
    }
}
