"""piper-tts (onnxruntime) side of examples/tts_bench.rs: same voice, same texts, same measures.
The Rust bench starts this script once and then asks it for one synthesis at a time, in turn
with its own, so that both sides of a pair run under the same load.

    pip install piper-tts==1.8.0
    python tools/examples/piper_tts_bench.py models/cache/en_US-joe-medium/en_US-joe-medium.onnx

It prints {"load_s": ..., "versions": ...} once the voice is loaded, then reads one request per
line on stdin: {"text": "...", "normalize": true} is answered with {"seconds", "first_s",
"audio_seconds"} of one synthesis, "peak_rss" with {"peak_rss_mib"}. Each answer is one JSON line.
"""

import sys
import time

from bench_side import serve
from piper import PiperVoice, SynthesisConfig


def synthesize(voice, text, normalize):
    # piper-tts yields a sentence at a time, normalised or not.
    config = SynthesisConfig(normalize_audio=normalize)
    start = time.perf_counter()
    first = None
    samples = 0
    rate = 1
    for chunk in voice.synthesize(text, config):
        if first is None:
            first = time.perf_counter() - start
        samples += len(chunk.audio_float_array)
        rate = chunk.sample_rate
    return {"seconds": time.perf_counter() - start, "first_s": first, "audio_seconds": samples / rate}


def main():
    serve(lambda: PiperVoice.load(sys.argv[1]),
          lambda voice, request: synthesize(voice, request["text"], request.get("normalize", True)),
          ("piper-tts", "onnxruntime"))


if __name__ == "__main__":
    main()
