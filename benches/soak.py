#!/usr/bin/env python3
"""Soak run against a running `smai serve` on loopback: mixed speech, transcription, refused
and malformed requests from several client threads, with idle sockets held open, for a bounded
time and request count. Samples the server's RSS and open file descriptors every second from
/proc and prints the curve's start (after warm-up) and end, the status counts, and whether any
5xx came back. Standard library only.

python3 benches/soak.py --pid $SERVER_PID --key $KEY --limited-key $KEY_RPM_1 --audio clip.wav
"""

import argparse
import collections
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:8080")
    p.add_argument("--pid", type=int, required=True, help="the server's process id, for /proc sampling")
    p.add_argument("--key", required=True, help="a key with tts and asr and limits well above the run")
    p.add_argument("--limited-key", required=True, help="a key whose requests-per-minute limit is spent")
    p.add_argument("--audio", required=True, help="a short recording to transcribe")
    p.add_argument("--seconds", type=int, default=600)
    p.add_argument("--max-requests", type=int, default=200_000)
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--idle-sockets", type=int, default=200)
    p.add_argument("--warm-up", type=int, default=60, help="seconds before the RSS baseline")
    return p.parse_args()


def multipart(fields, file_name, file_bytes):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
    )
    parts.append(file_bytes + f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Mix:
    """The request kinds, cycled by every client."""

    def __init__(self, args):
        self.base, self.key, self.limited = args.base_url, args.key, args.limited_key
        with open(args.audio, "rb") as f:
            self.audio = f.read()

    def requests(self):
        speech = json.dumps({"input": "The soak goes on. Nothing leaks.", "voice": "joe"}).encode()
        stream = json.dumps({"input": "One. Two.", "voice": "joe", "stream_format": "audio", "response_format": "pcm"})
        upload, upload_type = multipart({"model": "tiny.en"}, "clip.wav", self.audio)
        garbage, garbage_type = multipart({}, "broken.mp3", os.urandom(4096))
        json_type = "application/json"
        return [
            ("speech", "POST", "/v1/audio/speech", speech, json_type, self.key),
            ("speech_stream", "POST", "/v1/audio/speech", stream.encode(), json_type, self.key),
            ("transcription", "POST", "/v1/audio/transcriptions", upload, upload_type, self.key),
            ("no_key", "GET", "/v1/models", None, None, None),
            ("wrong_key", "GET", "/v1/voices", None, None, "smai_" + "x" * 40),
            ("over_limit", "GET", "/v1/models", None, None, self.limited),
            ("malformed_audio", "POST", "/v1/audio/transcriptions", garbage, garbage_type, self.key),
            ("malformed_json", "POST", "/v1/audio/speech", b"{not json", json_type, self.key),
            ("health", "GET", "/healthz", None, None, None),
        ]


def send(base, method, path, body, content_type, key):
    request = urllib.request.Request(base + path, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code
    except OSError:
        return 0  # connection-level failure, counted apart from statuses


def proc_sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss_kb / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


def hold_idle_sockets(base, count, stop):
    host, port = base.split("//", 1)[1].split(":")
    held = []
    while not stop.is_set():
        # Reopen what the server's keep-alive and header timeouts close, so the count stays up.
        held = [s for s in held if s.fileno() != -1]
        while len(held) < count and not stop.is_set():
            try:
                s = socket.create_connection((host, int(port)), timeout=5)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
                held.append(s)
            except OSError:
                break
        stop.wait(5)
        for s in held:
            try:
                s.setblocking(False)
                s.recv(1)  # the server's 408 or its close: either way the socket is done
                s.close()
            except BlockingIOError:
                pass  # still open and silent
            except OSError:
                s.close()
    for s in held:
        s.close()


def main():
    args = parse_args()
    mix = Mix(args).requests()
    counts = collections.Counter()
    issued = [0]
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + args.seconds

    def client(offset):
        i = offset
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                if issued[0] >= args.max_requests:
                    return
                issued[0] += 1
            name, method, path, body, content_type, key = mix[i % len(mix)]
            status = send(args.base_url, method, path, body, content_type, key)
            with lock:
                counts[(name, status)] += 1
            i += 1

    idle = threading.Thread(target=hold_idle_sockets, args=(args.base_url, args.idle_sockets, stop), daemon=True)
    idle.start()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(args.clients)]
    for t in threads:
        t.start()
    samples = []
    started = time.monotonic()
    while any(t.is_alive() for t in threads):
        samples.append((time.monotonic() - started, *proc_sample(args.pid)))
        time.sleep(1)
    stop.set()
    idle.join(timeout=10)
    report(args, samples, counts)


def report(args, samples, counts):
    after = [s for s in samples if s[0] >= args.warm_up] or samples
    first, last = after[0], after[-1]
    peak = max(s[1] for s in after)
    print(f"duration {samples[-1][0]:.0f} s, requests {sum(counts.values())}")
    print(f"RSS after warm-up ({first[0]:.0f} s): {first[1]:.1f} MiB; at the end ({last[0]:.0f} s): "
          f"{last[1]:.1f} MiB; peak after warm-up {peak:.1f} MiB")
    print(f"open fds after warm-up: {first[2]}; at the end: {last[2]}; max {max(s[2] for s in after)}")
    for minute in range(0, int(samples[-1][0]) + 1, 60):
        near = min(samples, key=lambda s: abs(s[0] - minute))
        print(f"  t={near[0]:4.0f} s  rss={near[1]:7.1f} MiB  fds={near[2]}")
    by_kind = collections.defaultdict(dict)
    for (name, status), n in sorted(counts.items()):
        by_kind[name][status] = n
    for name, statuses in by_kind.items():
        print(f"  {name}: " + ", ".join(f"{s}x{n}" for s, n in statuses.items()))
    server_errors = sum(n for (_, s), n in counts.items() if s >= 500)
    failures = sum(n for (_, s), n in counts.items() if s == 0)
    print(f"5xx: {server_errors}; connection failures: {failures}")


if __name__ == "__main__":
    main()
