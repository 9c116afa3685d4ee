// The playground page: REST calls and live sockets to the server that served it, and nowhere
// else. A browser cannot set headers on a WebSocket, so the key goes in each socket's first
// message. The key lives in this module's memory, or in sessionStorage when the user asks.

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "smai-api-key";
const authEnabled = $("app").dataset.auth !== "disabled";
let apiKey = "";

// ---- messages and errors ----

function say(area, text) {
  $(`${area}-status`).textContent = text;
}

function fail(area, text) {
  $(`${area}-error`).textContent = text;
}

function clear(area) {
  say(area, "");
  fail(area, "");
}

/** The server's error JSON (REST body or socket event) as one readable line. */
function describeError(status, body, retryAfter) {
  const error = body && body.error;
  let text = error && error.message ? `${error.message} (${error.code})` : `The request failed (HTTP ${status}).`;
  if (retryAfter) text += ` Retry in ${retryAfter} s.`;
  return text;
}

function closeMessage(event) {
  const reason = event.reason ? `: ${event.reason}` : "";
  return `The connection closed unexpectedly (code ${event.code}${reason}).`;
}

/** A REST call with the key; throws an Error whose message is the server's. */
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  if (authEnabled && apiKey) headers.set("Authorization", `Bearer ${apiKey}`);
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not the error JSON: the status alone is described.
    }
    throw new Error(describeError(response.status, body, response.headers.get("retry-after")));
  }
  return response;
}

/** A live socket on this origin that authenticates (when keys are on) and sends `start`. */
function openSocket(path, start) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}${path}`);
  socket.binaryType = "arraybuffer";
  socket.addEventListener("open", () => {
    if (authEnabled) socket.send(JSON.stringify({ type: "auth", api_key: apiKey }));
    socket.send(JSON.stringify(start));
  });
  return socket;
}

/** Points a media element (and optionally a link) at a blob, freeing the previous one. */
function showBlob(element, blob, link) {
  if (element.dataset.url) URL.revokeObjectURL(element.dataset.url);
  const url = URL.createObjectURL(blob);
  element.dataset.url = url;
  element.src = url;
  if (link) link.href = url;
}

// ---- key and catalogue ----

function setUpKey() {
  if (!authEnabled) {
    $("key-form").hidden = true;
    $("key-heading").textContent = "Server";
    say("key", "No API key needed: this server runs without authentication.");
    loadCatalogue();
    return;
  }
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) {
    $("api-key").value = stored;
    $("remember-key").checked = true;
    useKey();
  }
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useKey();
  });
  $("remember-key").addEventListener("change", rememberKey);
}

function rememberKey() {
  if ($("remember-key").checked && apiKey) sessionStorage.setItem(KEY_STORAGE, apiKey);
  else sessionStorage.removeItem(KEY_STORAGE);
}

async function useKey() {
  apiKey = $("api-key").value.trim();
  rememberKey();
  clear("key");
  if (!apiKey) {
    fail("key", "Enter an API key first.");
    return;
  }
  say("key", "Checking the key…");
  await loadCatalogue();
}

function fill(select, ids) {
  const kept = select.value;
  select.replaceChildren(...ids.map((id) => new Option(id, id)));
  if (ids.includes(kept)) select.value = kept;
}

/** The recognition models and voices the key may use fill the choices. */
async function loadCatalogue() {
  try {
    const models = (await (await api("/v1/models")).json()).data;
    const asr = models.filter((m) => m.service === "asr").map((m) => m.id);
    fill($("asr-model"), asr);
    const speaks = models.some((m) => m.service === "tts");
    const voices = speaks ? (await (await api("/v1/voices")).json()).data.map((v) => v.id) : [];
    fill($("voice"), voices);
    const ready = `${voices.length} voice(s), ${asr.length} recognition model(s).`;
    say("key", authEnabled ? `Key accepted: ${ready}` : `No API key needed. ${ready}`);
  } catch (error) {
    say("key", "");
    fail("key", error.message);
  }
}

// ---- text to speech ----

/** Plays s16le chunks back to back as they arrive. */
class PcmPlayer {
  constructor() {
    this.context = new AudioContext();
    this.next = 0;
  }

  play(pcm, rate) {
    const buffer = this.context.createBuffer(1, pcm.length, rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    this.next = Math.max(this.next, this.context.currentTime + 0.05);
    source.start(this.next);
    this.next += buffer.duration;
  }

  /** Closes the context once what was queued has played. */
  finish() {
    const left = Math.max(0, this.next - this.context.currentTime);
    setTimeout(() => this.context.close(), left * 1000 + 250);
  }
}

/** A WAV file (16-bit mono) around the received PCM. */
function wavBlob(chunks, rate) {
  const bytes = chunks.reduce((n, c) => n + c.byteLength, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (at, s) => [...s].forEach((c, i) => header.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + bytes, true);
  text(8, "WAVEfmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, rate, true);
  header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, bytes, true);
  return new Blob([header.buffer, ...chunks], { type: "audio/wav" });
}

function speak(event) {
  event.preventDefault();
  clear("speak");
  const text = $("speak-text").value.trim();
  if (!text) return fail("speak", "Type some text first.");
  if (!$("voice").value) return fail("speak", "No voice to choose from: use a key that may speak.");
  $("speak").disabled = true;
  $("speak-result").hidden = true;
  const speech = { chunks: [], rate: 0, failed: false, player: new PcmPlayer() };
  const start = { type: "start", voice: $("voice").value, speed: Number($("speed").value) };
  const socket = openSocket("/v1/realtime/tts", start);
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ type: "speak", text }));
    socket.send(JSON.stringify({ type: "stop" }));
  });
  socket.addEventListener("message", (message) => onSpeech(message, speech));
  socket.addEventListener("close", (closed) => finishSpeech(closed, speech));
  say("speak", "Synthesising…");
}

function onSpeech(message, speech) {
  if (message.data instanceof ArrayBuffer) {
    const pcm = new Int16Array(message.data);
    speech.chunks.push(pcm);
    if (speech.rate) speech.player.play(pcm, speech.rate);
    return;
  }
  const event = JSON.parse(message.data);
  if (event.type === "segment_start") {
    speech.rate = event.sample_rate;
    say("speak", `Speaking: “${event.text.trim()}”`);
  } else if (event.type === "error") {
    speech.failed = true;
    fail("speak", describeError(0, event, null));
  } else if (event.type === "done") {
    say("speak", `Done: ${event.audio_seconds.toFixed(1)} s of audio for ${event.characters} characters.`);
  }
}

function finishSpeech(closed, speech) {
  $("speak").disabled = false;
  speech.player.finish();
  if (closed.code !== 1000) {
    say("speak", "");
    if (!speech.failed) fail("speak", closeMessage(closed));
  }
  if (speech.chunks.length === 0 || !speech.rate) return;
  showBlob($("speak-audio"), wavBlob(speech.chunks, speech.rate), $("speak-download"));
  $("speak-result").hidden = false;
}

// ---- live recognition from the microphone ----

const recording = { socket: null, context: null, stream: null, node: null, pending: [], failed: false };

/** 16 kHz is the recogniser's rate: the browser resamples and less is sent. */
function captureContext() {
  try {
    return new AudioContext({ sampleRate: 16000 });
  } catch {
    return new AudioContext();
  }
}

async function startCapture() {
  const audio = { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  recording.stream = await navigator.mediaDevices.getUserMedia({ audio });
  const context = (recording.context = captureContext());
  await context.audioWorklet.addModule("/playground/capture-worklet.js");
  const chunkFrames = Math.round(context.sampleRate / 10);
  const node = new AudioWorkletNode(context, "pcm-capture", { numberOfOutputs: 0, processorOptions: { chunkFrames } });
  node.port.onmessage = (event) => onCaptured(event.data);
  context.createMediaStreamSource(recording.stream).connect(node);
  recording.node = node;
}

function releaseCapture() {
  if (recording.stream) recording.stream.getTracks().forEach((track) => track.stop());
  if (recording.context) recording.context.close();
  recording.stream = recording.context = recording.node = null;
}

function onCaptured(data) {
  const socket = recording.socket;
  const open = socket && socket.readyState === WebSocket.OPEN;
  if (data === "flushed") {
    if (open) socket.send(JSON.stringify({ type: "stop" }));
    releaseCapture();
  } else if (open) {
    socket.send(data);
  } else if (!socket || socket.readyState === WebSocket.CONNECTING) {
    recording.pending.push(data);
  }
}

async function record() {
  clear("record");
  $("record").disabled = true;
  $("live-finals").textContent = "";
  $("live-partial").textContent = "";
  try {
    await startCapture();
  } catch (error) {
    fail("record", `The microphone could not be opened: ${error.message}`);
    releaseCapture();
    $("record").disabled = false;
    return;
  }
  const model = $("asr-model").value || undefined;
  const rate = recording.context.sampleRate;
  const start = { type: "start", model, sample_rate: rate, encoding: "pcm_s16le", interim_results: true };
  const socket = (recording.socket = openSocket("/v1/realtime/asr", start));
  socket.addEventListener("open", () => recording.pending.splice(0).forEach((chunk) => socket.send(chunk)));
  socket.addEventListener("message", onLive);
  socket.addEventListener("close", onLiveClose);
  $("stop").disabled = false;
  $("stop").focus();
  say("record", "Recording… press Stop when you have finished speaking.");
}

function stop() {
  $("stop").disabled = true;
  say("record", "Finishing the transcript…");
  // The worklet sends what it holds, then "flushed", on which `stop` goes out.
  if (recording.node) recording.node.port.postMessage("flush");
  else releaseCapture();
}

function onLive(message) {
  const event = JSON.parse(message.data);
  if (event.type === "partial") {
    $("live-partial").textContent = event.text.trim();
  } else if (event.type === "final") {
    const finals = $("live-finals");
    finals.append((finals.textContent ? " " : "") + event.text.trim());
    $("live-partial").textContent = "";
  } else if (event.type === "error") {
    recording.failed = true;
    fail("record", describeError(0, event, null));
  } else if (event.type === "done") {
    say("record", `Done: ${event.audio_seconds.toFixed(1)} s of audio, ${event.utterances} utterance(s).`);
  }
}

function onLiveClose(closed) {
  if (closed.code !== 1000 && !recording.failed) fail("record", closeMessage(closed));
  if (closed.code !== 1000) say("record", "");
  releaseCapture();
  Object.assign(recording, { socket: null, pending: [], failed: false });
  $("record").disabled = false;
  $("stop").disabled = true;
}

// ---- file transcription ----

async function transcribe(event) {
  event.preventDefault();
  clear("upload");
  const file = $("upload-file").files[0];
  if (!file) return fail("upload", "Choose an audio file first.");
  const format = $("upload-format").value;
  const form = new FormData();
  form.append("file", file);
  form.append("response_format", format);
  if ($("asr-model").value) form.append("model", $("asr-model").value);
  if (format === "verbose_json") {
    form.append("timestamp_granularities[]", "segment");
    form.append("timestamp_granularities[]", "word");
  }
  $("transcribe").disabled = true;
  say("upload", "Transcribing…");
  try {
    const response = await api("/v1/audio/transcriptions", { method: "POST", body: form });
    showTranscript(file, format, format === "verbose_json" ? await response.json() : await response.text());
    say("upload", `Done (${format}).`);
  } catch (error) {
    say("upload", "");
    fail("upload", error.message);
  } finally {
    $("transcribe").disabled = false;
  }
}

function showTranscript(file, format, result) {
  const json = format === "verbose_json";
  const words = (json && result.words) || [];
  $("upload-words").replaceChildren(
    ...words.map((word) => {
      const span = document.createElement("span");
      span.textContent = word.word;
      span.dataset.start = word.start;
      span.dataset.end = word.end;
      return span;
    }),
  );
  $("upload-output").textContent = json ? "" : result;
  $("upload-json-output").textContent = json ? JSON.stringify(result, null, 2) : "";
  $("upload-json").hidden = !json;
  showBlob($("upload-audio"), file);
  $("upload-result").hidden = false;
}

/** Marks the word being heard while the uploaded audio plays. */
function highlightWord() {
  const now = $("upload-audio").currentTime;
  for (const span of $("upload-words").children) {
    const current = now >= Number(span.dataset.start) && now < Number(span.dataset.end);
    span.classList.toggle("current", current);
    if (current) span.setAttribute("aria-current", "true");
    else span.removeAttribute("aria-current");
  }
}

/** Follows the audio frame by frame while it plays (timeupdate alone is too coarse). */
function followPlayback() {
  highlightWord();
  if (!$("upload-audio").paused) requestAnimationFrame(followPlayback);
}

// ---- wiring ----

setUpKey();
$("speak-form").addEventListener("submit", speak);
$("speak-text").addEventListener("keydown", (event) => {
  // Ctrl+Enter (or Cmd+Enter) speaks from the text box.
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("speak-form").requestSubmit();
});
$("record").addEventListener("click", record);
$("stop").addEventListener("click", stop);
$("upload-form").addEventListener("submit", transcribe);
for (const name of ["timeupdate", "seeked"]) $("upload-audio").addEventListener(name, highlightWord);
$("upload-audio").addEventListener("play", followPlayback);
