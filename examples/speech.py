"""Speech and transcription with the official `openai` package (pip install openai).
Needs SMAI_API_KEY; the server is SMAI_BASE_URL (default http://localhost:8080)."""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("SMAI_BASE_URL", "http://localhost:8080") + "/v1",
    api_key=os.environ["SMAI_API_KEY"],
)

# Streams the audio to the file as the server synthesises it, sentence by sentence.
with client.audio.speech.with_streaming_response.create(
    model="tts-1",
    voice="joe",
    input="Hello! This sentence was spoken by a machine.",
    response_format="mp3",
) as response:
    response.stream_to_file("hello.mp3")

with open("hello.mp3", "rb") as audio:
    transcript = client.audio.transcriptions.create(model="whisper-1", file=audio)
print(transcript.text)
