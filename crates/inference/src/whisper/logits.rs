//! Logit rules applied before each token is chosen, following CTranslate2's Whisper
//! generation as faster-whisper drives it: suppressed tokens, blank suppression at the first
//! step, and the timestamp rules (pairs, non-decreasing, initial timestamp bound, and
//! "timestamps win when their total probability beats every text token").

/// Token ids the rules need.
#[derive(Debug, Clone)]
pub struct TimestampTokens {
    pub eot: u32,
    pub no_timestamps: u32,
    pub timestamp_begin: u32,
    /// Last id of the vocabulary (the last timestamp).
    pub timestamp_end: u32,
}

#[derive(Debug, Clone)]
pub struct LogitRules {
    pub suppress: Vec<u32>,
    /// Suppressed at the first generated step only (`suppress_blank`).
    pub suppress_begin: Vec<u32>,
    /// `None` when decoding without timestamps.
    pub timestamps: Option<TimestampTokens>,
    /// Highest timestamp index allowed as the first token (1.0 s / 0.02 = 50).
    pub max_initial_timestamp_index: u32,
}

fn disable(logits: &mut [f32], range: std::ops::Range<usize>) {
    let end = range.end.min(logits.len());
    for v in &mut logits[range.start.min(end)..end] {
        *v = f32::NEG_INFINITY;
    }
}

pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![f32::NEG_INFINITY; logits.len()];
    }
    let sum: f64 = logits.iter().map(|&v| ((v - max) as f64).exp()).sum();
    let lse = max + sum.ln() as f32;
    logits.iter().map(|&v| v - lse).collect()
}

fn logsumexp(xs: &[f32]) -> f32 {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    max + (xs.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32)
}

impl LogitRules {
    /// Masks `logits` in place; `generated` are the tokens chosen so far after the prompt.
    /// Returns the masked logits' [`log_softmax`] where the rules computed it on the way (the
    /// timestamps' probability check), so that callers need not compute it again.
    pub fn apply(&self, logits: &mut [f32], generated: &[u32]) -> Option<Vec<f32>> {
        for &t in &self.suppress {
            disable(logits, t as usize..t as usize + 1);
        }
        if generated.is_empty() {
            for &t in &self.suppress_begin {
                disable(logits, t as usize..t as usize + 1);
            }
        }
        let Some(ts) = &self.timestamps else { return None };
        let begin = ts.timestamp_begin as usize;
        let end = ts.timestamp_end as usize + 1;
        disable(logits, ts.no_timestamps as usize..ts.no_timestamps as usize + 1);
        if generated.is_empty() {
            disable(logits, 0..begin);
            disable(logits, begin + self.max_initial_timestamp_index as usize + 1..end);
            return None;
        }
        let is_ts = |t: u32| t >= ts.timestamp_begin;
        let last = generated[generated.len() - 1];
        let mut check_probability = true;
        if is_ts(last) {
            let penultimate = if generated.len() >= 2 { generated[generated.len() - 2] } else { last };
            if is_ts(penultimate) {
                disable(logits, begin..end); // a pair just closed: text or EOT next
                check_probability = false;
            } else {
                disable(logits, 0..ts.eot as usize); // a pair must close
            }
        }
        if let Some(&prev) = generated.iter().rev().find(|&&t| is_ts(t)) {
            disable(logits, begin..prev as usize);
        }
        if !check_probability {
            return None;
        }
        let lp = log_softmax(logits);
        let max_text = lp[..begin].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if logsumexp(&lp[begin..end.min(lp.len())]) > max_text {
            disable(logits, 0..begin);
            return None;
        }
        Some(lp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> LogitRules {
        // vocab: 0..5 text, 5 eot, 6 notimestamps, 7..12 timestamps
        LogitRules {
            suppress: vec![1],
            suppress_begin: vec![2, 5],
            timestamps: Some(TimestampTokens { eot: 5, no_timestamps: 6, timestamp_begin: 7, timestamp_end: 11 }),
            max_initial_timestamp_index: 1,
        }
    }

    fn allowed(l: &[f32]) -> Vec<usize> {
        (0..l.len()).filter(|&i| l[i].is_finite()).collect()
    }

    #[test]
    fn first_step_allows_only_early_timestamps() {
        let mut l = vec![0.0; 12];
        rules().apply(&mut l, &[]);
        assert_eq!(allowed(&l), vec![7, 8]);
    }

    #[test]
    fn timestamps_come_in_pairs_and_never_decrease() {
        let r = rules();
        // After <|t1|> text: text, eot or a timestamp >= t1 may follow.
        let mut l = vec![0.0; 12];
        l[0] = 10.0; // text clearly more likely than all timestamps together
        let lp = r.apply(&mut l, &[8, 0]);
        assert_eq!(allowed(&l), vec![0, 2, 3, 4, 5, 8, 9, 10, 11]);
        // The probability check's log-probabilities, returned, are the masked logits'.
        assert_eq!(lp, Some(log_softmax(&l)));
        // After text then a timestamp: the pair must close with a later-or-equal timestamp.
        let mut l = vec![0.0; 12];
        r.apply(&mut l, &[8, 0, 9]);
        assert_eq!(allowed(&l), vec![9, 10, 11]);
        // After two timestamps: no timestamp.
        let mut l = vec![0.0; 12];
        r.apply(&mut l, &[8, 0, 9, 9]);
        assert_eq!(allowed(&l), vec![0, 2, 3, 4, 5]);
    }

    #[test]
    fn timestamp_mass_beats_text() {
        let mut l = vec![0.0; 12];
        l[0] = 1.0; // text max e^1 < sum over 5 timestamps e^0 * 5
        let lp = rules().apply(&mut l, &[8, 0]);
        assert_eq!(allowed(&l), vec![8, 9, 10, 11]);
        // Text was masked after the check: its log-probabilities no longer hold.
        assert_eq!(lp, None);
    }
}
