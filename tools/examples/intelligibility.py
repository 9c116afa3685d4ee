"""Intelligibility of our Piper voice against piper-tts: the same 20 sentences (Harvard
sentences) synthesised by both, each transcribed by faster-whisper with Whisper tiny.en, then
word error rate of each against the text.

    pip install piper-tts==1.8.0 faster-whisper
    cargo run -p smai-tools --example synthesize_files -- \
        tools/examples/intelligibility_sentences.txt /tmp/ours
    python tools/examples/intelligibility.py \
        models/cache/en_US-joe-medium/en_US-joe-medium.onnx /tmp/ours models/cache/tiny.en
"""

import re
import sys
import wave
from pathlib import Path

from faster_whisper import WhisperModel
from piper import PiperVoice

HERE = Path(__file__).parent
voice_path, ours_dir, whisper_dir = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
sentences = [l.strip() for l in (HERE / "intelligibility_sentences.txt").read_text().splitlines() if l.strip()]

theirs_dir = ours_dir.parent / (ours_dir.name + "-piper")
theirs_dir.mkdir(parents=True, exist_ok=True)
voice = PiperVoice.load(voice_path)
for n, text in enumerate(sentences):
    with wave.open(str(theirs_dir / f"{n}.wav"), "wb") as f:
        voice.synthesize_wav(text, f)

model = WhisperModel(whisper_dir, device="cpu", compute_type="float32")


def words(text):
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def wer(folder):
    errors = total = 0
    for n, text in enumerate(sentences):
        segments, _ = model.transcribe(str(folder / f"{n}.wav"), language="en", beam_size=5)
        heard = " ".join(s.text for s in segments)
        errors += edit_distance(words(text), words(heard))
        total += len(words(text))
    return 100.0 * errors / total


ours, theirs = wer(ours_dir), wer(theirs_dir)
print(f"WER ours {ours:.1f}%  piper-tts {theirs:.1f}%  (difference {ours - theirs:+.1f} points)")
sys.exit(0 if ours <= theirs + 2.0 else 1)
