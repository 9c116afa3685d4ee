"""A Wyoming client built on the PyPI `wyoming` package, as Home Assistant's integration is,
for the end-to-end tests and the latency bench. Prints one JSON object on stdout.

  describe  URI                       -> {"seconds": ..., "info": {...}}
  transcribe URI WAV [--raw RATE,WIDTH,CHANNELS] [--realtime] [--language L] [--names N,...]
                                      -> {"events": [{"type", "data"}...], "seconds_after_stop": ...}
  synthesize URI TEXT [--voice V] [--stream] [--chunk-chars N] [--wav OUT]
                                      -> {"events": [...], "seconds_to_first_audio": ..., "sample_rate": ...}
"""

import argparse
import asyncio
import json
import sys
import time
import wave

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

CHUNK_SAMPLES = 1024  # what Home Assistant's satellites send


def summary(event):
    data = dict(event.data or {})
    if event.payload:
        data["payload_bytes"] = len(event.payload)
    return {"type": event.type, "data": data}


async def read_events(client, ends, on_event):
    """Summaries of the events read until one of the types `ends` (or the connection's end),
    each event also handed to `on_event`."""
    events = []
    while True:
        event = await asyncio.wait_for(client.read_event(), timeout=120)
        if event is None:
            return events
        events.append(summary(event))
        on_event(event)
        if event.type in ends:
            return events


async def describe(uri):
    async with AsyncClient.from_uri(uri) as client:
        started = time.monotonic()
        await client.write_event(Describe().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), timeout=10)
            if event is None:
                raise SystemExit("connection closed before info")
            if Info.is_type(event.type):
                seconds = time.monotonic() - started
                return {"seconds": seconds, "info": Info.from_event(event).event().data}


def read_audio(path, raw_format):
    """A WAV file's frames and format, or raw PCM in the format given as RATE,WIDTH,CHANNELS."""
    if raw_format:
        rate, width, channels = (int(x) for x in raw_format.split(","))
        with open(path, "rb") as raw:
            return raw.read(), rate, width, channels
    with wave.open(path, "rb") as wav:
        return wav.readframes(wav.getnframes()), wav.getframerate(), wav.getsampwidth(), wav.getnchannels()


async def transcribe(uri, path, raw_format, realtime, language, names):
    audio, rate, width, channels = read_audio(path, raw_format)
    frame = width * channels
    step = CHUNK_SAMPLES * frame
    async with AsyncClient.from_uri(uri) as client:
        await client.write_event(
            Transcribe(language=language, transcript_names=names or None).event()
        )
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        for offset in range(0, len(audio), step):
            chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=audio[offset : offset + step])
            await client.write_event(chunk.event())
            if realtime:
                await asyncio.sleep(CHUNK_SAMPLES / rate)
        await client.write_event(AudioStop().event())
        stopped = time.monotonic()
        after_stop = None

        def on_event(event):
            nonlocal after_stop
            if event.type == "transcript":
                after_stop = time.monotonic() - stopped

        events = await read_events(client, ("transcript-stop", "error"), on_event)
    return {"events": events, "seconds_after_stop": after_stop}


async def synthesize(uri, text, voice, stream, chunk_chars, wav_out):
    voice = SynthesizeVoice(name=voice) if voice else None
    async with AsyncClient.from_uri(uri) as client:
        started = time.monotonic()
        if stream:
            await client.write_event(SynthesizeStart(voice=voice).event())
            for offset in range(0, len(text), chunk_chars):
                await client.write_event(SynthesizeChunk(text=text[offset : offset + chunk_chars]).event())
            # Sent for servers that do not stream, as Home Assistant does.
            await client.write_event(Synthesize(text=text, voice=voice).event())
            await client.write_event(SynthesizeStop().event())
            last = "synthesize-stopped"
        else:
            await client.write_event(Synthesize(text=text, voice=voice).event())
            last = "audio-stop"
        first_audio, pcm, rate = None, bytearray(), None

        def on_event(event):
            nonlocal first_audio, rate
            if event.type == "audio-chunk":
                if first_audio is None:
                    first_audio = time.monotonic() - started
                chunk = AudioChunk.from_event(event)
                rate = chunk.rate
                pcm.extend(chunk.audio)

        events = await read_events(client, (last, "error"), on_event)
    if wav_out and rate:
        with wave.open(wav_out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(bytes(pcm))
    return {"events": events, "seconds_to_first_audio": first_audio, "sample_rate": rate}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["describe", "transcribe", "synthesize"])
    parser.add_argument("uri")
    parser.add_argument("input", nargs="?")
    parser.add_argument("--realtime", action="store_true")
    parser.add_argument("--raw", help="the input is raw PCM: RATE,WIDTH,CHANNELS")
    parser.add_argument("--language")
    parser.add_argument("--names", default="")
    parser.add_argument("--voice")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--chunk-chars", type=int, default=7)
    parser.add_argument("--wav")
    args = parser.parse_args()
    if args.command == "describe":
        result = asyncio.run(describe(args.uri))
    elif args.command == "transcribe":
        names = [n for n in args.names.split(",") if n]
        result = asyncio.run(transcribe(args.uri, args.input, args.raw, args.realtime, args.language, names))
    else:
        result = asyncio.run(
            synthesize(args.uri, args.input, args.voice, args.stream, args.chunk_chars, args.wav)
        )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
