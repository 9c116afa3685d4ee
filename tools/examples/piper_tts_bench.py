"""piper-tts (onnxruntime) side of examples/tts_bench.rs: same voice, same texts, same measures.
The Rust bench runs this script as a child process; it can also be run alone:

    pip install piper-tts==1.8.0
    python tools/examples/piper_tts_bench.py models/cache/en_US-joe-medium/en_US-joe-medium.onnx

The last line printed is the figures as JSON, for the Rust side to read.
"""

import json
import resource
import sys
import time
from pathlib import Path

from piper import PiperVoice, SynthesisConfig

texts = json.loads((Path(__file__).parent / "bench_texts.json").read_text())
started = time.perf_counter()
voice = PiperVoice.load(sys.argv[1])
load_s = time.perf_counter() - started
print(f"load: {load_s:.2f} s")


def run(text, syn_config=None):
    start = time.perf_counter()
    first = None
    samples = 0
    rate = 1
    for chunk in voice.synthesize(text, syn_config):
        if first is None:
            first = time.perf_counter() - start
        samples += len(chunk.audio_float_array)
        rate = chunk.sample_rate
    return time.perf_counter() - start, first, samples / rate


figures = {"load_s": load_s}
run(texts["short"])  # warm-up
for name in ("short", "long"):
    total = audio = 0.0
    for _ in range(texts["repeats"]):
        secs, _, audio_secs = run(texts[name])
        total += secs
        audio += audio_secs
    n = texts["repeats"]
    figures[name] = {"seconds": total / n, "audio_seconds": audio / n}
    print(f"{name}: {total / n:.3f} s per synthesis for {audio / n:.2f} s of audio "
          f"(real-time factor {total / audio:.3f})")
firsts = sorted(run(texts["paragraph"])[1] for _ in range(texts["repeats"]))
figures["first_chunk_s"] = firsts[len(firsts) // 2]
print(f"paragraph: first chunk after {figures['first_chunk_s']:.3f} s (median of {len(firsts)})")
# Without normalisation: piper-tts still yields a sentence at a time.
unnormalized = SynthesisConfig(normalize_audio=False)
firsts = sorted(run(texts["paragraph"], unnormalized)[1] for _ in range(texts["repeats"]))
figures["first_streamed_s"] = firsts[len(firsts) // 2]
print(f"paragraph, not normalized: first chunk after {figures['first_streamed_s']:.3f} s")
figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"peak memory: {figures['peak_rss_mib']:.0f} MiB")
print(json.dumps(figures))
