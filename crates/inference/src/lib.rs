//! smai-inference: speech models on candle. Whisper ASR and Piper voices land here.
