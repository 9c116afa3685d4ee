#!/usr/bin/env bash
# Speech, then a transcription of it, with curl. Needs SMAI_API_KEY; the server is
# SMAI_BASE_URL (default http://localhost:8080).
set -euo pipefail
base="${SMAI_BASE_URL:-http://localhost:8080}"
auth="Authorization: Bearer $SMAI_API_KEY"

# Text to speech: wav, pcm, flac, mp3 or opus.
curl -sS --fail-with-body "$base/v1/audio/speech" -H "$auth" -H "Content-Type: application/json" \
  -d '{"model": "tts-1", "voice": "joe", "input": "Hello! This sentence was spoken by a machine.", "response_format": "wav"}' \
  -o hello.wav

# Streamed as each sentence is ready: raw 16-bit mono PCM (pipe it into a player, or save it).
curl -sS --fail-with-body --no-buffer "$base/v1/audio/speech" -H "$auth" -H "Content-Type: application/json" \
  -d '{"voice": "joe", "input": "First sentence. Second sentence.", "response_format": "pcm", "stream_format": "audio"}' \
  -o hello.pcm

# Speech to text: json, text, srt, vtt or verbose_json.
curl -sS --fail-with-body "$base/v1/audio/transcriptions" -H "$auth" \
  -F file=@hello.wav -F model=whisper-1 -F response_format=text
