// Microphone capture on the audio thread: the first input channel as 16-bit PCM, posted to the
// page in chunks of about 100 ms (the live socket wants 20-200 ms frames). A "flush" message
// posts what is left, then "flushed", so the page can send `stop` after the last sample.
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunk = new Int16Array(options.processorOptions.chunkFrames);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post();
        this.port.postMessage("flushed");
      }
    };
  }

  post() {
    if (this.filled === 0) return;
    const pcm = this.chunk.slice(0, this.filled);
    this.port.postMessage(pcm.buffer, [pcm.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const samples = inputs[0] && inputs[0][0];
    if (!samples) return true;
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      this.chunk[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.chunk.length) this.post();
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
