"""faster-whisper side of `asr_bench` (src/cli/bench.rs): transcribes the first N dev files with
the settings our engine is compared under and prints one JSON line of timings.

    python faster_whisper_bench.py MODEL_DIR EVAL_DIR N [BEAM_SIZE [COMPUTE_TYPE]]

Settings: float32 (or COMPUTE_TYPE) on CPU with every core, greedy (beam 1) unless BEAM_SIZE says, temperature 0, no conditioning on
previous text, English, no VAD. The model directory is the same CTranslate2 directory our
engine loads, so both sides run the same weights.
"""
import json
import os
import resource
import sys
import time


def main():
    model_dir, eval_dir, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    beam_size = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    compute_type = sys.argv[5] if len(sys.argv) > 5 else "float32"
    from faster_whisper import WhisperModel

    with open(os.path.join(eval_dir, "manifest.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    rows = [r for r in rows if len(r) >= 4][:limit]
    started = time.perf_counter()
    model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=os.cpu_count() or 1)
    load_s = time.perf_counter() - started
    texts = []
    started = time.perf_counter()
    for r in rows:
        segments, _ = model.transcribe(os.path.join(eval_dir, r[0]), language="en", beam_size=beam_size,
                                       temperature=0.0, condition_on_previous_text=False, vad_filter=False)
        texts.append("".join(s.text for s in segments).strip())
    process_s = time.perf_counter() - started
    print(json.dumps(dict(
        load_s=load_s,
        process_s=process_s,
        audio_s=sum(float(r[1]) for r in rows),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        texts=texts,
    )))


if __name__ == "__main__":
    main()
