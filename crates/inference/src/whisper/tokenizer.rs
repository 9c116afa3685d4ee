//! Whisper's byte-level BPE vocabulary: token ids of the special tokens and decoding of text
//! tokens, as faster-whisper's `Tokenizer` does (text tokens are those below `<|endoftext|>`).

use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct WhisperTokenizer {
    tokens: Vec<String>,
    by_text: HashMap<String, u32>,
    byte_of_char: HashMap<char, u8>,
    pub eot: u32,
    pub sot: u32,
    pub sot_prev: u32,
    pub sot_lm: Option<u32>,
    pub transcribe: u32,
    pub translate: u32,
    pub no_timestamps: u32,
    pub no_speech: u32,
    /// First timestamp token `<|0.00|>`.
    pub timestamp_begin: u32,
    pub multilingual: bool,
}

/// GPT-2's reversible byte -> printable char table.
pub(crate) fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable.into_iter().zip(chars).map(|(b, c)| (b as u8, char::from_u32(c).expect("valid"))).collect()
}

impl WhisperTokenizer {
    /// From CTranslate2's `vocabulary.txt` (one token per line, id = line number).
    pub fn from_vocabulary(text: &str) -> Result<Self, String> {
        let tokens: Vec<String> = text.lines().map(str::to_string).collect();
        // As in openai/whisper: English-only models have 51864 tokens, multilingual ones more.
        let multilingual = tokens.len() >= 51865;
        Self::from_tokens(tokens, multilingual)
    }

    pub fn from_tokens(tokens: Vec<String>, multilingual: bool) -> Result<Self, String> {
        let by_text: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let id = |t: &str| by_text.get(t).copied().ok_or_else(|| format!("vocabulary lacks {t}"));
        let no_timestamps = id("<|notimestamps|>")?;
        let no_speech = id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?;
        let sot = id("<|startoftranscript|>")?;
        Ok(Self {
            eot: id("<|endoftext|>")?,
            sot,
            sot_prev: id("<|startofprev|>")?,
            sot_lm: id("<|startoflm|>").ok(),
            transcribe: id("<|transcribe|>")?,
            translate: id("<|translate|>")?,
            no_timestamps,
            no_speech,
            timestamp_begin: id("<|0.00|>").unwrap_or(no_timestamps + 1),
            multilingual,
            byte_of_char: bytes_to_unicode().into_iter().map(|(b, c)| (c, b)).collect(),
            tokens,
            by_text,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.by_text.get(token).copied()
    }

    /// `<|en|>` -> id, for a language code.
    pub fn language_token(&self, code: &str) -> Option<u32> {
        self.token_id(&format!("<|{code}|>"))
    }

    /// The code of a language token id (`<|en|>` -> `en`).
    pub fn language_code(&self, id: u32) -> Option<&str> {
        let t = self.tokens.get(id as usize)?;
        t.strip_prefix("<|")?.strip_suffix("|>")
    }

    /// `<|startoftranscript|>` then, for multilingual models, language and task.
    pub fn sot_sequence(&self, language: Option<u32>, translate: bool) -> Vec<u32> {
        let mut seq = vec![self.sot];
        if self.multilingual {
            if let Some(l) = language {
                seq.push(l);
            }
            seq.push(if translate { self.translate } else { self.transcribe });
        }
        seq
    }

    /// Text of the tokens below `<|endoftext|>`; invalid UTF-8 is replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids.iter().filter(|&&t| t < self.eot) {
            if let Some(tok) = self.tokens.get(id as usize) {
                bytes.extend(tok.chars().filter_map(|c| self.byte_of_char.get(&c)));
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_byte_level_tokens_and_finds_specials() {
        let mut toks: Vec<String> = vec!["Hello".into(), "Ġworld".into(), "Ã©".into(), ",".into()];
        for s in ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>", "<|0.00|>"]
        {
            toks.push(s.into());
        }
        let t = WhisperTokenizer::from_tokens(toks, true).unwrap();
        assert_eq!(t.decode(&[0, 1, 3, 2, 4, 14]), "Hello world,é");
        assert!(t.multilingual);
        assert_eq!(t.timestamp_begin, 14);
        assert_eq!(t.sot_sequence(t.language_token("en"), false), vec![5, 6, 9]);
        assert_eq!(t.language_code(6), Some("en"));
    }
}
