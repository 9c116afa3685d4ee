"""Drives smai's OpenAI Realtime endpoint with the official `openai` package's realtime client
(GA interface, websockets transport): a transcription session that commits by hand, then one
with server_vad. Prints each completed transcript; the Rust test compares them with REST's.

Env: SMAI_BASE_URL, SMAI_API_KEY, SMAI_TEST_CLIP (16-bit mono WAV).
"""
import asyncio
import audioop
import base64
import os
import wave

from openai import AsyncOpenAI

BASE = os.environ["SMAI_BASE_URL"]


def pcm16_24k(path):
    with wave.open(path, "rb") as w:
        frames, rate = w.readframes(w.getnframes()), w.getframerate()
    return audioop.ratecv(frames, 2, 1, rate, 24000, None)[0]


async def transcribe(audio, turn_detection):
    client = AsyncOpenAI(api_key=os.environ["SMAI_API_KEY"], base_url=BASE + "/v1",
                         websocket_base_url=BASE.replace("http", "ws", 1) + "/v1")
    async with client.realtime.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as conn:
        created = await conn.recv()
        assert created.type == "session.created", created
        await conn.session.update(session={
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                                "turn_detection": turn_detection}}})
        updated = await conn.recv()
        assert updated.type == "session.updated", updated
        chunk = 4800  # 100 ms of 24 kHz pcm16
        for i in range(0, len(audio), chunk * 2):
            await conn.input_audio_buffer.append(audio=base64.b64encode(audio[i:i + chunk * 2]).decode())
        if turn_detection is None:
            await conn.input_audio_buffer.commit()
        else:
            # A second of silence lets the VAD end the turn.
            await conn.input_audio_buffer.append(audio=base64.b64encode(bytes(48000)).decode())
        seen, transcripts, deltas = [], [], ""
        while True:
            event = await asyncio.wait_for(conn.recv(), 60)
            seen.append(event.type)
            if event.type == "error":
                raise SystemExit(f"error event: {event.error}")
            if event.type == "conversation.item.input_audio_transcription.delta":
                deltas += event.delta
            if event.type == "conversation.item.input_audio_transcription.completed":
                transcripts.append(event.transcript)
                break
        assert "input_audio_buffer.committed" in seen and "conversation.item.created" in seen, seen
        if turn_detection is not None:
            assert seen.index("input_audio_buffer.speech_started") < seen.index("input_audio_buffer.speech_stopped"), seen
        assert deltas.strip() == transcripts[-1].strip(), (deltas, transcripts)
        return " ".join(t.strip() for t in transcripts)


async def main():
    audio = pcm16_24k(os.environ["SMAI_TEST_CLIP"])
    manual = await transcribe(audio, None)
    print(f"manual: {manual}")
    vad = await transcribe(audio, {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                   "silence_duration_ms": 800})
    print(f"server_vad: {vad}")


asyncio.run(main())
