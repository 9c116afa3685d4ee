//! Text to Piper phoneme ids: espeak-ng IPA phonemes grouped by sentence, punctuation kept
//! (as piper-tts's `EspeakPhonemizer` does), then ids interspersed with BOS/EOS/pad as in
//! piper-tts's `phonemes_to_ids`.

mod espeak;

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

pub use espeak::{text_to_clauses, Clause};

pub const PAD: &str = "_";
pub const BOS: &str = "^";
pub const EOS: &str = "$";

#[derive(Debug, thiserror::Error)]
pub enum PhonemizeError {
    #[error("espeak-ng: {0}")]
    Espeak(String),
    #[error("espeak-ng has no voice {0:?}")]
    Voice(String),
    #[error("phoneme id map lacks the required symbol {0:?}")]
    MissingSymbol(&'static str),
}

/// IPA phonemes (one string per Unicode code point, NFD) for each sentence of `text`.
pub fn phonemize(voice: &str, text: &str) -> Result<Vec<Vec<String>>, PhonemizeError> {
    let mut sentences = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for clause in text_to_clauses(voice, text)? {
        let mut phonemes = show_linking_j(&strip_language_flags(&clause.phonemes));
        phonemes.push_str(clause.terminator);
        if matches!(clause.terminator, "," | ":" | ";") {
            // Not a sentence boundary: keep a word break after the mark.
            phonemes.push(' ');
        }
        current.extend(phonemes.nfd().map(String::from));
        if clause.end_of_sentence {
            sentences.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        sentences.push(current);
    }
    sentences.retain(|s| !s.is_empty());
    Ok(sentences)
}

/// espeak-ng marks words of another language as `(en)...(fr)`; Piper drops the marks.
fn strip_language_flags(phonemes: &str) -> String {
    let mut out = String::with_capacity(phonemes.len());
    let mut rest = phonemes;
    while let Some(open) = rest.find('(') {
        match rest[open + 1..].find(')') {
            // `\([^)]+\)`: at least one character inside.
            Some(len) if len > 0 => {
                out.push_str(&rest[..open]);
                rest = &rest[open + 1 + len + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// espeak-ng appends a linking `;` (IPA ʲ) after the i-vowels (i, iː, ɪ, ᵻ) when a vowel follows,
/// and after aɪ when an a- or o-vowel follows (en-us phoneme rules), even across a word break.
/// Release 1.52.0.1 hides it in IPA output (`IF prevPh(#i) THEN ipa NULL`), but the espeak-ng
/// inside piper-tts prints it, and Piper voices were trained with it (ʲ is in their id maps), so
/// it is restored here where espeak-ng appends it.
fn show_linking_j(phonemes: &str) -> String {
    const VOWELS: &str = "aeiouæɑɒɔəɚɛɜɝɪʊʌᵻɐɘɵɞɤɯøœyʏɨʉ";
    const A_OR_O_VOWELS: &str = "aæɑɐɒɔo";
    let chars: Vec<char> = phonemes.chars().collect();
    let mut out = String::with_capacity(phonemes.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        out.push(c);
        if chars.get(i + 1) == Some(&'ʲ') {
            continue;
        }
        // The vowel ends here (after its length mark, if any).
        let vowel_at = if c == 'ː' && i > 0 { i - 1 } else { i };
        if c != 'ː' && chars.get(i + 1) == Some(&'ː') {
            continue;
        }
        let prev = vowel_at.checked_sub(1).map(|p| chars[p]);
        let next = chars[i + 1..].iter().find(|&&n| !matches!(n, ' ' | 'ˈ' | 'ˌ')).copied();
        let Some(next) = next else { continue };
        let links = match (prev, chars[vowel_at]) {
            // aɪ: only before a- and o-vowels.
            (Some('a'), 'ɪ') => A_OR_O_VOWELS.contains(next),
            // The second half of eɪ, ɔɪ, oɪ is not an i-vowel.
            (Some('e' | 'ɔ' | 'o'), 'ɪ') => false,
            // iə with nothing between is the diphthong phoneme, not i then ə.
            (_, 'i') if c == 'i' && chars.get(i + 1) == Some(&'ə') => false,
            (_, 'i' | 'ɪ' | 'ᵻ') => VOWELS.contains(next),
            _ => false,
        };
        if links {
            out.push('ʲ');
        }
    }
    out
}

/// Piper's id sequence: BOS, pad, then each known phoneme followed by pad, then EOS.
/// Phonemes missing from the map are skipped, as Piper does.
pub fn phonemes_to_ids(phonemes: &[String], id_map: &HashMap<String, Vec<i64>>) -> Result<Vec<i64>, PhonemizeError> {
    let symbol = |s: &'static str| id_map.get(s).ok_or(PhonemizeError::MissingSymbol(s));
    let (bos, eos, pad) = (symbol(BOS)?, symbol(EOS)?, symbol(PAD)?);
    let mut ids = Vec::with_capacity(2 * phonemes.len() + 3);
    ids.extend(bos);
    ids.extend(pad);
    for phoneme in phonemes {
        if let Some(mapped) = id_map.get(phoneme) {
            ids.extend(mapped);
            ids.extend(pad);
        } else {
            tracing::debug!(phoneme = phoneme.as_str(), "phoneme missing from the voice's id map");
        }
    }
    ids.extend(eos);
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_flags_are_removed() {
        assert_eq!(strip_language_flags("(fr)bɔ̃ʒuʁ(en) wˈɜːld"), "bɔ̃ʒuʁ wˈɜːld");
        assert_eq!(strip_language_flags("a()b"), "a()b");
    }

    #[test]
    fn linking_j_follows_i_vowels_before_vowels() {
        assert_eq!(show_linking_j("ðə ɹˈiːəl lˈaɪf"), "ðə ɹˈiːʲəl lˈaɪf");
        assert_eq!(show_linking_j("θˈɜːɾi ˌeɪˈɛm"), "θˈɜːɾiʲ ˌeɪˈɛm");
        assert_eq!(show_linking_j("ðɪ ˈiːmˈeɪl"), "ðɪʲ ˈiːmˈeɪl");
        assert_eq!(show_linking_j("maɪ aɪdˈiə"), "maɪʲ aɪdˈiə");
        assert_eq!(show_linking_j("maɪ ˈɛɡ"), "maɪ ˈɛɡ");
        assert_eq!(show_linking_j("seɪ ˈɛni"), "seɪ ˈɛni");
        assert_eq!(show_linking_j("fˈæntəsi"), "fˈæntəsi");
    }

    #[test]
    fn ids_are_interspersed_with_pad() {
        let map: HashMap<String, Vec<i64>> = [("^", 1), ("$", 2), ("_", 0), ("a", 5), ("b", 6)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), vec![v]))
            .collect();
        let ids = phonemes_to_ids(&["a".into(), "?".into(), "b".into()], &map).unwrap();
        assert_eq!(ids, vec![1, 0, 5, 0, 6, 0, 2]);
    }

    #[test]
    fn sentences_keep_punctuation() {
        let sentences = phonemize("en-us", "Hello, world. How are you?").unwrap();
        assert_eq!(sentences.len(), 2, "{sentences:?}");
        let first: String = sentences[0].concat();
        assert!(first.contains(", "), "{first}");
        assert!(first.ends_with('.'), "{first}");
        assert!(sentences[1].concat().ends_with('?'));
    }
}
