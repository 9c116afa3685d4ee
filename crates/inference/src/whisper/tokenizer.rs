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

/// Python's `string.punctuation`; membership is tested as a substring, as the reference does.
const ASCII_PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Languages written without spaces between words: split wherever a whole character ends.
const NO_SPACE_LANGUAGES: [&str; 6] = ["zh", "ja", "th", "lo", "my", "yue"];

impl WhisperTokenizer {
    /// Text of any tokens; special tokens read as themselves (`<|endoftext|>`).
    fn decode_with_specials(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(tok) = self.tokens.get(id as usize) else { continue };
            if id < self.eot {
                bytes.extend(tok.chars().filter_map(|c| self.byte_of_char.get(&c)));
            } else {
                bytes.extend_from_slice(tok.as_bytes());
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Groups tokens into words as faster-whisper's `split_to_word_tokens` does: at spaces
    /// and punctuation, or, for languages without spaces, at character boundaries.
    pub fn split_to_word_tokens(&self, tokens: &[u32], language: &str) -> (Vec<String>, Vec<Vec<u32>>) {
        let (subwords, subword_tokens) = self.split_on_characters(tokens);
        if NO_SPACE_LANGUAGES.contains(&language) {
            return (subwords, subword_tokens);
        }
        let mut words: Vec<String> = Vec::new();
        let mut word_tokens: Vec<Vec<u32>> = Vec::new();
        for (subword, toks) in subwords.into_iter().zip(subword_tokens) {
            let special = toks.first().is_some_and(|&t| t >= self.eot);
            let with_space = subword.starts_with(' ');
            let punctuation = ASCII_PUNCTUATION.contains(subword.trim());
            match (words.last_mut(), word_tokens.last_mut()) {
                (Some(w), Some(t)) if !(special || with_space || punctuation) => {
                    w.push_str(&subword);
                    t.extend(toks);
                }
                _ => {
                    words.push(subword);
                    word_tokens.push(toks);
                }
            }
        }
        (words, word_tokens)
    }

    /// Cuts where the text decoded so far holds no partial character (a replacement
    /// character that the full text does not also have at that place).
    fn split_on_characters(&self, tokens: &[u32]) -> (Vec<String>, Vec<Vec<u32>>) {
        const REPLACEMENT: char = '\u{fffd}';
        let full: Vec<char> = self.decode_with_specials(tokens).chars().collect();
        let (mut words, mut word_tokens, mut current) = (Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0usize;
        for &token in tokens {
            current.push(token);
            let decoded = self.decode_with_specials(&current);
            let bad = decoded.chars().position(|c| c == REPLACEMENT).map(|i| i + offset);
            if bad.is_none_or(|i| full.get(i) == Some(&REPLACEMENT)) {
                offset += decoded.chars().count();
                words.push(decoded);
                word_tokens.push(std::mem::take(&mut current));
            }
        }
        (words, word_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_byte_level_tokens_and_finds_specials() {
        let mut toks: Vec<String> = vec!["Hello".into(), "Ġworld".into(), "Ã©".into(), ",".into()];
        for s in [
            "<|endoftext|>",
            "<|startoftranscript|>",
            "<|en|>",
            "<|de|>",
            "<|translate|>",
            "<|transcribe|>",
            "<|startoflm|>",
            "<|startofprev|>",
            "<|nospeech|>",
            "<|notimestamps|>",
            "<|0.00|>",
        ] {
            toks.push(s.into());
        }
        let t = WhisperTokenizer::from_tokens(toks, true).unwrap();
        assert_eq!(t.decode(&[0, 1, 3, 2, 4, 14]), "Hello world,é");
        assert!(t.multilingual);
        assert_eq!(t.timestamp_begin, 14);
        assert_eq!(t.sot_sequence(t.language_token("en"), false), vec![5, 6, 9]);
        assert_eq!(t.language_code(6), Some("en"));
    }

    #[test]
    fn splits_words_at_spaces_and_punctuation() {
        let mut toks: Vec<String> =
            ["ĠHello", ",", "Ġwor", "ld", ".", "Ġ\"", "Hi", "\"", "ĠÃ", "©"].map(String::from).to_vec();
        toks.push("<|endoftext|>".into());
        for s in [
            "<|startoftranscript|>",
            "<|en|>",
            "<|translate|>",
            "<|transcribe|>",
            "<|startoflm|>",
            "<|startofprev|>",
            "<|nospeech|>",
            "<|notimestamps|>",
        ] {
            toks.push(s.into());
        }
        let t = WhisperTokenizer::from_tokens(toks, true).unwrap();
        let (words, groups) = t.split_to_word_tokens(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "en");
        assert_eq!(words, [" Hello", ",", " world", ".", " \"Hi", "\"", " é", "<|endoftext|>"]);
        let expected: Vec<Vec<u32>> =
            vec![vec![0], vec![1], vec![2, 3], vec![4], vec![5, 6], vec![7], vec![8, 9], vec![10]];
        assert_eq!(groups, expected);
        // A character split across tokens stays whole where words are not spaced.
        let (chars, _) = t.split_to_word_tokens(&[8, 9, 2], "ja");
        assert_eq!(chars, [" é", " wor"]);
    }
}
