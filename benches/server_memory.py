#!/usr/bin/env python3
"""Resident memory of `smai serve` with the default models loaded, as a user's server holds it:
starts the server (no auth, a free loopback port, a throwaway database), waits for /readyz,
then sends one transcription to each Whisper model and one speech request, and prints the
server's VmRSS after loading and after the requests, and its peak (VmHWM). One line per
compute type. Standard library only.

  python3 benches/server_memory.py --smai target/release/smai --models ~/.cache/smai/models \\
      --compute-type float32 --compute-type int8
"""

import argparse
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = ROOT / "../shared/eval/dev"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mib(pid):
    """VmRSS, VmHWM (the peak) and RssFile (mapped files: the binary's code, read-only data)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssFile"):
                fields[name] = int(rest.split()[0]) / 1024.0
    return fields["VmRSS"], fields["VmHWM"], fields["RssFile"]


def post(url, body, content_type):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.read()


def transcription_body(audio, model):
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{audio.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + audio.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wait_ready(base, server):
    for _ in range(1200):
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit("the server did not become ready")


def measure(args, compute_type, audio):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = Path(tempfile.mkdtemp()) / "keys.db"
    command = [args.smai, "serve", "--listen", f"127.0.0.1:{port}", "--auth", "disabled", "--db", str(db),
               "--compute-type", compute_type]
    env = dict(os.environ, SMAI_MODELS_DIR=args.models)
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(base, server)
        loaded, _, _ = memory_mib(server.pid)
        for model in args.asr_models:
            body, content_type = transcription_body(audio, model)
            text = json.loads(post(f"{base}/v1/audio/transcriptions", body, content_type))["text"]
            if not text.strip():
                raise SystemExit(f"{model} returned no text for {audio}")
        speech = json.dumps({"model": "tts-1", "voice": args.voice, "input": args.text}).encode()
        if len(post(f"{base}/v1/audio/speech", speech, "application/json")) < 1000:
            raise SystemExit("the speech request returned no audio")
        time.sleep(1.0)
        served, peak, files = memory_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"  {compute_type:<9} loaded {loaded:6.0f} MiB   after a request to each {served:6.0f} MiB "
          f"(files {files:3.0f})   peak {peak:6.0f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smai", required=True, help="the smai binary")
    parser.add_argument("--models", default=str(ROOT / "models/cache"))
    parser.add_argument("--compute-type", action="append", help="repeatable (default float32)")
    parser.add_argument("--asr-models", default="tiny.en,base")
    parser.add_argument("--voice", default="joe")
    parser.add_argument("--audio", help="a recording to transcribe (default: the dev set's first)")
    parser.add_argument("--text", default="The birch canoe slid on the smooth planks. Glue the sheet to the dark "
                                          "blue background. It is easy to tell the depth of a well.")
    args = parser.parse_args()
    args.asr_models = [m for m in args.asr_models.split(",") if m]
    audio = Path(args.audio) if args.audio else first_dev_recording()
    print(f"smai serve resident memory ({platform.machine()}, {os.cpu_count()} CPUs), models "
          f"{', '.join(args.asr_models)} and voice {args.voice}, audio {audio.name}")
    for compute_type in args.compute_type or ["float32"]:
        measure(args, compute_type, audio)


def first_dev_recording():
    manifest = (DEFAULT_AUDIO / "manifest.tsv").read_text().splitlines()
    for line in manifest[1:]:
        path = DEFAULT_AUDIO / line.split("\t")[0]
        if path.is_file():
            return path
    raise SystemExit(f"no recording found through {DEFAULT_AUDIO / 'manifest.tsv'}; pass --audio")


if __name__ == "__main__":
    main()
