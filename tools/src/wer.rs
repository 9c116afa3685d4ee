//! Word error rate with a normaliser modelled on Whisper's `EnglishTextNormalizer`: lower
//! case, bracketed asides and fillers dropped, English contractions expanded, symbols and
//! punctuation removed. Number and British-spelling standardisation are not done here; the
//! recording script scores with the full Python normaliser.

const FILLERS: &[&str] = &["hmm", "mm", "mhm", "mmm", "uh", "um"];
const CONTRACTIONS: &[(&str, &str)] = &[
    ("won't", "will not"),
    ("can't", "can not"),
    ("let's", "let us"),
    ("ain't", "aint"),
    ("y'all", "you all"),
    ("n't", " not"),
    ("'re", " are"),
    ("'ll", " will"),
    ("'d", " would"),
    ("'ve", " have"),
    ("'m", " am"),
];

fn strip_brackets(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = (depth - 1).max(0),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

pub fn normalize(text: &str) -> String {
    let mut s = strip_brackets(&text.to_lowercase().replace(['’', '‘'], "'"));
    for (from, to) in CONTRACTIONS {
        s = s.replace(from, to);
    }
    let cleaned: String = s.chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    cleaned.split_whitespace().filter(|w| !FILLERS.contains(w)).collect::<Vec<_>>().join(" ")
}

/// Word-level edit distance.
pub fn word_errors(reference: &[&str], hypothesis: &[&str]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

/// Corpus WER: all edits over all reference words, after normalisation.
pub fn corpus_wer<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> f64 {
    let (mut errors, mut words) = (0usize, 0usize);
    for (reference, hypothesis) in pairs {
        let (r, h) = (normalize(reference), normalize(hypothesis));
        let r: Vec<&str> = r.split_whitespace().collect();
        let h: Vec<&str> = h.split_whitespace().collect();
        errors += word_errors(&r, &h);
        words += r.len();
    }
    if words == 0 {
        0.0
    } else {
        errors as f64 / words as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_whisper_for_common_cases() {
        assert_eq!(
            normalize("Mister Quilter's manner, [laughs] isn't (uh) bad!"),
            "mister quilter s manner is not bad"
        );
        assert_eq!(normalize("  Um, WE'RE here. "), "we are here");
    }

    #[test]
    fn wer_counts_substitutions_insertions_deletions() {
        assert_eq!(word_errors(&["a", "b", "c"], &["a", "x", "c", "d"]), 2);
        assert_eq!(word_errors(&["a", "b"], &[]), 2);
        let wer = corpus_wer([("ask not what", "Ask not, what!"), ("your country", "your county")]);
        assert!((wer - 0.2).abs() < 1e-12);
    }
}
