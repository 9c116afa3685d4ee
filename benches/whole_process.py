"""Whole-process transcription as users run it, model load included: `smai transcribe` over the
first N dev files beside faster-whisper transcribing the same files in one Python process, the
same model directory, the same beam size and compute type, alternating sides round by round. Several `--smai`
binaries may be given (a build before and after a change, say), each timed in the same rounds.

  python3 benches/whole_process.py --smai target/release/smai --python .venv/bin/python \\
      --model tiny.en --files 10 --beam-size 5 --rounds 3
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FASTER_WHISPER = """
import sys
from faster_whisper import WhisperModel
model_dir, beam, compute_type = sys.argv[1], int(sys.argv[2]), sys.argv[3]
model = WhisperModel(model_dir, device="cpu", compute_type=compute_type)
for path in sys.argv[4:]:
    segments, _ = model.transcribe(path, language="en", beam_size=beam)
    print("".join(s.text for s in segments).strip())
"""


VERSIONS = """
import sys
from importlib.metadata import version
print(", ".join(f"{p} {version(p)}" for p in sys.argv[1:]))
"""


def peer_versions(python, *packages):
    """The installed versions of `packages` in the peer's Python: pip takes a peer's runtime
    (CTranslate2, onnxruntime) at its newest release unless pinned, and figures hold for what ran."""
    return subprocess.run([python, "-c", VERSIONS, *packages], capture_output=True, text=True).stdout.strip()


def timed(command, env=None):
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {out.stderr[-2000:]}")
    return time.monotonic() - started, out.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smai", action="append", required=True, help="a smai binary (repeatable)")
    parser.add_argument("--python", default=sys.executable, help="Python with faster-whisper==1.2.1")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compute-type", default="float32", choices=["float32", "bfloat16", "int8"],
                        help="both sides (faster-whisper runs float32 for bfloat16: its CPU builds lack it)")
    parser.add_argument("--models", default=str(ROOT / "models/cache"))
    parser.add_argument("--eval-dir", default=str(ROOT / "../shared/eval/dev"))
    args = parser.parse_args()
    eval_dir = Path(args.eval_dir)
    rows = [line.split("\t") for line in (eval_dir / "manifest.tsv").read_text().splitlines()[1:]]
    files = [str(eval_dir / r[0]) for r in rows[: args.files]]
    audio = sum(float(r[1]) for r in rows[: args.files])
    model_dir = str(Path(args.models) / args.model)
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    peer_type = "float32" if args.compute_type == "bfloat16" else args.compute_type
    times = {name: [] for name in args.smai + ["faster-whisper"]}
    outputs = {}
    for round_ in range(args.rounds):
        sides = [(b, [b, "transcribe", "--models-dir", args.models, "--model", args.model, "--language", "en",
                      "--beam-size", str(args.beam_size), "--compute-type", args.compute_type, "--format", "text",
                      *files]) for b in args.smai]
        sides.append(("faster-whisper", [args.python, "-c", FASTER_WHISPER, model_dir, str(args.beam_size),
                                         peer_type, *files]))
        if round_ % 2:
            sides.reverse()
        for name, command in sides:
            seconds, out = timed(command, env)
            times[name].append(seconds)
            outputs[name] = out
    print(f"whole process: {args.model} {args.compute_type}, {len(files)} files ({audio:.1f} s of audio), "
          f"beam {args.beam_size}, "
          f"{args.rounds} rounds, {os.cpu_count()} CPUs; {peer_versions(args.python, 'faster-whisper', 'ctranslate2')}")
    peer = min(times["faster-whisper"])
    for name, values in times.items():
        best = min(values)
        print(f"  {name:40} best {best:6.2f} s  mean {statistics.mean(values):6.2f} s  ratio to faster-whisper {best / peer:.2f}")


if __name__ == "__main__":
    main()
