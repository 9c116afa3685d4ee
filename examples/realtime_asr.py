"""Live transcription over smai's WebSocket: streams a 16-bit mono WAV file in 100 ms chunks
as a microphone would, and prints partials (provisional) and finals as they come.

    pip install websockets
    SMAI_API_KEY=smai_... python realtime_asr.py recording.wav

The server is SMAI_BASE_URL (default http://localhost:8080; https:// becomes wss://).
SMAI_SPEED=4 sends four times faster than real time.
"""
import asyncio
import json
import os
import sys
import wave

import websockets

base = os.environ.get("SMAI_BASE_URL", "http://localhost:8080")
url = base.replace("http", "ws", 1) + "/v1/realtime/asr"
speed = float(os.environ.get("SMAI_SPEED", "1"))


async def send_audio(ws, path):
    with wave.open(path, "rb") as w:
        rate = w.getframerate()
        await ws.send(json.dumps({"type": "start", "sample_rate": rate, "encoding": "pcm_s16le",
                                  "interim_results": True,
                                  "vad": {"mode": "server", "min_silence_ms": 600}}))
        while frames := w.readframes(rate // 10):
            await ws.send(frames)  # binary message: raw PCM
            await asyncio.sleep(0.1 / speed)
    await ws.send(json.dumps({"type": "stop"}))


async def main(path):
    headers = {"X-API-Key": os.environ["SMAI_API_KEY"]}
    async with websockets.connect(url, additional_headers=headers) as ws:
        sender = asyncio.create_task(send_audio(ws, path))
        async for message in ws:
            event = json.loads(message)
            kind = event["type"]
            if kind == "partial":
                print(f"  ... {event['text'].strip()}")
            elif kind == "final":
                print(f"final {event['utterance']} [{event['start']:.2f} - {event['end']:.2f}]: "
                      f"{event['text'].strip()}")
            elif kind in ("speech_started", "speech_stopped"):
                print(f"{kind} {event['utterance']}")
            elif kind == "error":
                print(f"error: {event['error']['code']}: {event['error']['message']}")
            elif kind == "done":
                print(f"done: {event['audio_seconds']:.2f} s of audio, {event['utterances']} utterances")
        await sender


asyncio.run(main(sys.argv[1]))
