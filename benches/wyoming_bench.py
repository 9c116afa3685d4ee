"""Wyoming latency beside the peers Home Assistant users run today, on the same machine, the
same model files and the same client (the PyPI `wyoming` package), in one run:

  speech to text: smai vs wyoming-faster-whisper (tiny.en, beam 5, English), each dev clip
    streamed at real time in 1024-sample chunks as a satellite does; time from `audio-stop` to
    `transcript`. Then with each server ending the command itself (smai's VAD; the peer with
    `--vad-endpointing 0.7`, the same 0.7 s of silence): the clip and 2 s of silence streamed at
    real time without `audio-stop`; time from the end of the speech to `transcript`.
  text to speech: smai vs wyoming-piper (en_US-joe-medium); time from `synthesize` to the first
    `audio-chunk`.

Sides alternate round by round, so drift on a shared machine hits both. Run it with a venv's
Python holding `wyoming-faster-whisper==3.8.1 wyoming-piper==2.5.2` (they bring `wyoming`), and a
built smai:

  python3 -m venv .venv-peers && .venv-peers/bin/pip install wyoming-faster-whisper==3.8.1 wyoming-piper==2.5.2
  .venv-peers/bin/python benches/wyoming_bench.py --smai target/release/smai
"""

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("wyoming_client", ROOT / "tests/python/wyoming_client.py")
client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client)

CLIPS = ["LJ001-0002", "LJ001-0008", "LJ001-0013", "LJ001-0004"]
TEXTS = ["Turning on the kitchen lights.", "The front door is locked. Good night, and sleep well."]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_info(uri, deadline_s=120):
    """Waits until `describe` is answered with the program loaded (models installed)."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        try:
            asyncio.run(client.describe(uri))
            return
        except (OSError, SystemExit, asyncio.TimeoutError):
            time.sleep(0.2)
    raise SystemExit(f"{uri} did not answer describe")


def start(command, uri, env=None):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wait_for_info(uri)
    return process


def p50(values):
    return statistics.median(values)


def asr_round(uri, clips):
    out = {}
    for clip in clips:
        result = asyncio.run(client.transcribe(uri, str(clip), None, True, "en", []))
        text = next(e["data"]["text"] for e in result["events"] if e["type"] == "transcript")
        out[clip.name] = (result["seconds_after_stop"], text)
    return out


async def endpointed(uri, clip):
    """Streams the clip and 2 s of silence at real time, no audio-stop; seconds from the clip's
    end to the transcript."""
    import wave
    from wyoming.client import AsyncClient

    with wave.open(str(clip), "rb") as wav:
        rate, width = wav.getframerate(), wav.getsampwidth()
        audio = wav.readframes(wav.getnframes())
    speech_bytes = len(audio)
    audio += bytes(rate * width * 2)
    step = client.CHUNK_SAMPLES * width
    async with AsyncClient.from_uri(uri) as conn:
        await conn.write_event(client.Transcribe(language="en").event())
        await conn.write_event(client.AudioStart(rate=rate, width=width, channels=1).event())
        speech_end = None

        async def send():
            nonlocal speech_end
            for offset in range(0, len(audio), step):
                chunk = client.AudioChunk(rate=rate, width=width, channels=1, audio=audio[offset : offset + step])
                await conn.write_event(chunk.event())
                if speech_end is None and offset + step >= speech_bytes:
                    speech_end = time.monotonic()
                await asyncio.sleep(client.CHUNK_SAMPLES / rate)

        sender = asyncio.create_task(send())
        while True:
            event = await asyncio.wait_for(conn.read_event(), timeout=60)
            if event is None:
                raise SystemExit(f"{uri} closed without a transcript")
            if event.type == "transcript":
                seconds = time.monotonic() - speech_end if speech_end else float("nan")
                sender.cancel()
                await conn.write_event(client.AudioStop().event())
                return seconds, event.data["text"]


def tts_round(uri, voice):
    return [asyncio.run(client.synthesize(uri, text, voice, False, 0, None))["seconds_to_first_audio"] for text in TEXTS]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smai", default=str(ROOT / "target/release/smai"))
    parser.add_argument("--peers-python", default=sys.executable, help="the Python that runs the peers")
    parser.add_argument("--models", default=str(ROOT / "models/cache"))
    parser.add_argument("--eval-dir", default=str(ROOT / "../shared/eval/dev"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    models = Path(args.models).resolve()
    clips = [Path(args.eval_dir) / "ljspeech_prernasocity/wavs" / f"{c}.wav" for c in CLIPS]
    ours_uri, whisper_uri, piper_uri, endpointing_uri = (f"tcp://127.0.0.1:{free_port()}" for _ in range(4))
    db = Path("/tmp") / f"wyoming-bench-{os.getpid()}.db"
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    servers = [
        start([args.smai, "serve", "--auth", "disabled", "--db", str(db), "--listen", "127.0.0.1:0",
               "--grpc-listen", "off", "--models-dir", str(models), "--asr-models", "tiny.en",
               "--wyoming-listen", ours_uri], ours_uri, env),
        start([args.peers_python, "-m", "wyoming_faster_whisper", "--uri", whisper_uri,
               "--model", str(models / "tiny.en"), "--beam-size", "5", "--language", "en",
               "--cpu-threads", str(args.threads), "--data-dir", str(models), "--local-files-only"], whisper_uri),
        start([args.peers_python, "-m", "wyoming_faster_whisper", "--uri", endpointing_uri,
               "--model", str(models / "tiny.en"), "--beam-size", "5", "--language", "en",
               "--cpu-threads", str(args.threads), "--data-dir", str(models), "--local-files-only",
               "--vad-endpointing", "0.7"], endpointing_uri),
        start([args.peers_python, "-m", "wyoming_piper", "--uri", piper_uri, "--voice", "en_US-joe-medium",
               "--data-dir", str(models / "en_US-joe-medium"), "--local-files-only"], piper_uri),
    ]
    try:
        asr = {"smai": [], "wyoming-faster-whisper": []}
        tts = {"smai": [], "wyoming-piper": []}
        ended = {"smai": [], "wyoming-faster-whisper": []}
        texts = {}
        for _ in range(args.rounds):
            for name, uri in (("smai", ours_uri), ("wyoming-faster-whisper", whisper_uri)):
                for clip, (seconds, text) in asr_round(uri, clips).items():
                    asr[name].append(seconds)
                    texts.setdefault(clip, {})[name] = text
            for name, uri in (("smai", ours_uri), ("wyoming-faster-whisper", endpointing_uri)):
                for clip in clips:
                    ended[name].append(asyncio.run(endpointed(uri, clip))[0])
            for name, uri, voice in (("smai", ours_uri, "joe"), ("wyoming-piper", piper_uri, "en_US-joe-medium")):
                tts[name].extend(tts_round(uri, voice))
    finally:
        for server in servers:
            server.terminate()
    print(f"wyoming bench: {args.rounds} rounds, {len(clips)} clips streamed at real time, {args.threads} threads")
    print("audio-stop -> transcript (s):")
    for name, values in asr.items():
        print(f"  {name:24} p50 {p50(values):.3f}  mean {statistics.mean(values):.3f}  max {max(values):.3f}")
    print(f"  ratio smai/wyoming-faster-whisper p50: {p50(asr['smai']) / p50(asr['wyoming-faster-whisper']):.2f}")
    print("end of speech -> transcript, each server ending the command with its VAD at 0.7 s (s):")
    for name, values in ended.items():
        print(f"  {name:24} p50 {p50(values):.3f}  mean {statistics.mean(values):.3f}  max {max(values):.3f}")
    print(f"  ratio smai/wyoming-faster-whisper p50: {p50(ended['smai']) / p50(ended['wyoming-faster-whisper']):.2f}")
    print("synthesize -> first audio-chunk (s):")
    for name, values in tts.items():
        print(f"  {name:24} p50 {p50(values):.3f}  mean {statistics.mean(values):.3f}  max {max(values):.3f}")
    print(f"  ratio smai/wyoming-piper p50: {p50(tts['smai']) / p50(tts['wyoming-piper']):.2f}")
    for clip, by_side in texts.items():
        print(f"  {clip}: " + " | ".join(f"{side}: {text.strip()!r}" for side, text in by_side.items()))


if __name__ == "__main__":
    sys.exit(main())
