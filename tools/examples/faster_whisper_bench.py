"""faster-whisper side of `asr-bench` (tools/src/bench.rs): loads the model once, then
transcribes one file at a time on request, with the settings our engine is compared under.

    python faster_whisper_bench.py MODEL_DIR [BEAM_SIZE [COMPUTE_TYPE]]

It prints {"load_s": ..., "versions": ...} once the model is loaded, then reads one JSON
request per line on stdin: {"file": PATH} is answered with {"seconds", "text"} of its
transcription, "peak_rss" with {"peak_rss_mib"}. Each answer is one JSON line.

Settings: float32 (or COMPUTE_TYPE) on CPU with every core, greedy (beam 1) unless BEAM_SIZE
says, temperature 0, no conditioning on previous text, English, no VAD. The model directory is
the same CTranslate2 directory our engine loads, so both sides run the same weights.
"""
import os
import sys
import time

from bench_side import serve


def main():
    model_dir = sys.argv[1]
    beam_size = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    compute_type = sys.argv[3] if len(sys.argv) > 3 else "float32"
    from faster_whisper import WhisperModel

    def transcribe(model, request):
        started = time.perf_counter()
        segments, _ = model.transcribe(request["file"], language="en", beam_size=beam_size, temperature=0.0,
                                       condition_on_previous_text=False, vad_filter=False)
        text = "".join(s.text for s in segments).strip()
        return {"seconds": time.perf_counter() - started, "text": text}

    serve(lambda: WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=os.cpu_count() or 1),
          transcribe, ("faster-whisper", "ctranslate2"))


if __name__ == "__main__":
    main()
