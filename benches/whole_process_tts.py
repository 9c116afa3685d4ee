"""Whole-process speech synthesis as users run it, model load included: `smai synthesize` of a
12-sentence paragraph to a WAV file beside piper-tts's command line (`piper -m MODEL -i TEXT_FILE
-f OUT`) on the same voice file, alternating sides round by round. Several `--smai` binaries may be
given (a build before and after a change, say), each timed in the same rounds.

  python3 benches/whole_process_tts.py --smai target/release/smai --piper .venv/bin/piper --rounds 3
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path

from whole_process import peer_versions

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = ROOT / "tools/examples/intelligibility_sentences.txt"


def timed(command):
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {out.stderr[-2000:]}")
    return time.monotonic() - started


def seconds_of(path):
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smai", action="append", required=True, help="a smai binary (repeatable)")
    parser.add_argument("--piper", required=True, help="piper-tts 1.8.0's `piper` command")
    parser.add_argument("--models", default=str(ROOT / "models/cache"))
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lines = [l.strip() for l in SENTENCES.read_text().splitlines() if l.strip()][: args.sentences]
    text = " ".join(lines)
    model = str(Path(args.models) / "en_US-joe-medium/en_US-joe-medium.onnx")
    out = Path(tempfile.mkdtemp())
    (out / "text.txt").write_text(text + "\n")
    times = {name: [] for name in args.smai + ["piper-tts"]}
    audio = {}
    for round_ in range(args.rounds):
        sides = [(b, [b, "synthesize", text, "--voice", "joe", "--models-dir", args.models, "-o", str(out / f"{i}.wav")],
                  out / f"{i}.wav") for i, b in enumerate(args.smai)]
        sides.append(("piper-tts", [args.piper, "-m", model, "-i", str(out / "text.txt"), "-f", str(out / "piper.wav")], out / "piper.wav"))
        if round_ % 2:
            sides.reverse()
        for name, command, wav in sides:
            times[name].append(timed(command))
            audio[name] = seconds_of(wav)
    # The `piper` command's own environment's Python (a virtual environment's bin/).
    python = Path(args.piper).with_name("python")
    versions = peer_versions(str(python), "piper-tts", "onnxruntime") if python.exists() else "versions unknown"
    print(f"whole process synthesis: {len(lines)} sentences, {args.rounds} rounds, {os.cpu_count()} CPUs; {versions}")
    peer = min(times["piper-tts"])
    for name, values in times.items():
        best = min(values)
        print(f"  {name:40} best {best:6.2f} s  mean {statistics.mean(values):6.2f} s  "
              f"({audio[name]:.1f} s of audio)  ratio to piper-tts {best / peer:.2f}")


if __name__ == "__main__":
    main()
