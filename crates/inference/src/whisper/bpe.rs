//! Byte-level BPE encoding of prompt text, as GPT-2 / Whisper tokenizers do: split with the
//! GPT-2 pre-tokenisation pattern, map bytes to printable chars, then apply merges by rank.

use std::collections::HashMap;

pub struct BpeEncoder {
    ranks: HashMap<(String, String), usize>,
    vocab: HashMap<String, u32>,
    char_of_byte: [char; 256],
}

#[derive(PartialEq, Clone, Copy)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

fn class(c: char) -> Class {
    if c.is_alphabetic() {
        Class::Letter
    } else if c.is_numeric() {
        Class::Number
    } else if c.is_whitespace() {
        Class::Space
    } else {
        Class::Other
    }
}

/// GPT-2 pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
pub fn pre_tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
        if let Some(c) = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].iter().find(|c| rest.starts_with(**c)) {
            out.push(c.to_string());
            i += c.chars().count();
            continue;
        }
        let start = i;
        let lead_space = chars[i] == ' ' && i + 1 < chars.len() && class(chars[i + 1]) != Class::Space;
        let j = if lead_space { i + 1 } else { i };
        let k = class(chars[j]);
        if k == Class::Space {
            // Whitespace run; leave the last space to prefix the following word.
            let mut e = i;
            while e < chars.len() && class(chars[e]) == Class::Space {
                e += 1;
            }
            if e < chars.len() && e - i > 1 {
                e -= 1;
            }
            out.push(chars[start..e].iter().collect());
            i = e;
            continue;
        }
        let mut e = j;
        while e < chars.len() && class(chars[e]) == k {
            e += 1;
        }
        out.push(chars[start..e].iter().collect());
        i = e;
    }
    out
}

impl BpeEncoder {
    /// From a Hugging Face `tokenizer.json` (BPE model with `vocab` and `merges`).
    pub fn from_tokenizer_json(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let model = &v["model"];
        let vocab: HashMap<String, u32> = serde_json::from_value(model["vocab"].clone()).map_err(|e| e.to_string())?;
        let merges = model["merges"].as_array().ok_or("tokenizer.json has no merges")?;
        let mut ranks = HashMap::new();
        for (rank, m) in merges.iter().enumerate() {
            let pair = match m {
                serde_json::Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())),
                serde_json::Value::Array(a) if a.len() == 2 => {
                    Some((a[0].as_str().unwrap_or("").to_string(), a[1].as_str().unwrap_or("").to_string()))
                }
                _ => None,
            };
            if let Some(p) = pair {
                ranks.insert(p, rank);
            }
        }
        let mut char_of_byte = ['\0'; 256];
        for (b, c) in super::tokenizer::bytes_to_unicode() {
            char_of_byte[b as usize] = c;
        }
        Ok(Self { ranks, vocab, char_of_byte })
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for piece in pre_tokenize(text) {
            let mut parts: Vec<String> = piece.bytes().map(|b| self.char_of_byte[b as usize].to_string()).collect();
            loop {
                let best = (0..parts.len().saturating_sub(1))
                    .filter_map(|i| self.ranks.get(&(parts[i].clone(), parts[i + 1].clone())).map(|r| (*r, i)))
                    .min();
                let Some((_, i)) = best else { break };
                let merged = format!("{}{}", parts[i], parts[i + 1]);
                parts.splice(i..i + 2, [merged]);
            }
            ids.extend(parts.iter().filter_map(|p| self.vocab.get(p)));
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokenizes_like_gpt2() {
        assert_eq!(pre_tokenize("Hello world, it's 42!"), vec!["Hello", " world", ",", " it", "'s", " 42", "!"]);
        assert_eq!(pre_tokenize("a  b"), vec!["a", " ", " b"]);
    }
}
