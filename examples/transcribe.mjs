// Transcribes an audio file with plain fetch (Node 18 or later, no packages) and prints
// timed segments: node transcribe.mjs recording.wav
// Needs SMAI_API_KEY; the server is SMAI_BASE_URL (default http://localhost:8080).
import { readFile } from "node:fs/promises";
import { basename } from "node:path";

const base = process.env.SMAI_BASE_URL ?? "http://localhost:8080";
const path = process.argv[2];

const form = new FormData();
form.append("file", new Blob([await readFile(path)]), basename(path));
form.append("model", "whisper-1");
form.append("response_format", "verbose_json");

const response = await fetch(`${base}/v1/audio/transcriptions`, {
  method: "POST",
  headers: { Authorization: `Bearer ${process.env.SMAI_API_KEY}` },
  body: form,
});
if (!response.ok) {
  const { error } = await response.json();
  throw new Error(`${response.status} ${error.code}: ${error.message}`);
}
const transcript = await response.json();
for (const segment of transcript.segments) {
  console.log(`[${segment.start.toFixed(2)} - ${segment.end.toFixed(2)}] ${segment.text.trim()}`);
}
