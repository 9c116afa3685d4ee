// Live speech over smai's WebSocket, written as a browser page would (a browser cannot set
// headers on a WebSocket, so the key goes in the first message). Text is sent in pieces, as
// from a language model; the server cuts sentences and answers each with s16le PCM.
//   SMAI_API_KEY=smai_... node --experimental-websocket realtime_tts.mjs   (Node 22: no flag)
// The server is SMAI_BASE_URL (default http://localhost:8080).
const base = process.env.SMAI_BASE_URL ?? "http://localhost:8080";
const socket = new WebSocket(base.replace(/^http/, "ws") + "/v1/realtime/tts");
socket.binaryType = "arraybuffer";

const pieces = ["Hello! This sentence was", " spoken by a", " machine. And so was this one."];
let audioBytes = 0;

socket.addEventListener("open", () => {
  socket.send(JSON.stringify({ type: "auth", api_key: process.env.SMAI_API_KEY }));
  socket.send(JSON.stringify({ type: "start", voice: "joe" }));
  for (const text of pieces) socket.send(JSON.stringify({ type: "speak", text }));
  socket.send(JSON.stringify({ type: "stop" }));
});

socket.addEventListener("message", (message) => {
  if (message.data instanceof ArrayBuffer) {
    audioBytes += message.data.byteLength; // in a page: queue it on an AudioContext
    return;
  }
  const event = JSON.parse(message.data);
  if (event.type === "segment_start") console.log(`sentence ${event.segment}: ${event.text} (${event.sample_rate} Hz)`);
  if (event.type === "segment_end") console.log(`  ${event.audio_seconds.toFixed(2)} s of audio`);
  if (event.type === "error") console.log(`error ${event.error.code}: ${event.error.message}`);
  if (event.type === "done") console.log(`done: ${event.characters} characters, ${audioBytes} bytes of PCM`);
});

socket.addEventListener("close", (event) => console.log(`closed ${event.code}`));
