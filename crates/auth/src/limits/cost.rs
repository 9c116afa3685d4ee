//! Token costs of API.md, known before inference so they can be charged at admission.

/// TTS: one token per Unicode scalar value of the input text.
pub fn tts_tokens(text: &str) -> u64 {
    text.chars().count() as u64
}

/// ASR: one token per started 100 ms of audio, `⌈seconds × 10⌉`.
pub fn asr_tokens(samples: u64, sample_rate: u32) -> u64 {
    if sample_rate == 0 {
        return 0;
    }
    (u128::from(samples) * 10).div_ceil(u128::from(sample_rate)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_follow_the_api_contract() {
        assert_eq!(tts_tokens("héllo 👋"), 7);
        assert_eq!(tts_tokens(""), 0);
        assert_eq!(asr_tokens(16_000, 16_000), 10);
        assert_eq!(asr_tokens(16_001, 16_000), 11);
        assert_eq!(asr_tokens(1, 16_000), 1);
        assert_eq!(asr_tokens(0, 16_000), 0);
    }
}
