"""smai over gRPC with grpcio: synthesise, transcribe a file, stream a recording live, and
read the error details of a refused call.

Stubs come from the repository's proto/ with grpcio-tools:

    pip install grpcio==1.76.0 grpcio-tools==1.76.0 grpcio-status==1.76.0
    python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen \
        proto/smai/v1/tts.proto proto/smai/v1/asr.proto
    PYTHONPATH=gen SMAI_API_KEY=smai_... SMAI_GRPC_ADDR=localhost:50051 \
        python examples/grpc_client.py recording.wav

With TLS on the server, set SMAI_CA_CERT to the CA file that signed its certificate
(`smai tls init` writes one); without it the channel is plain, for a server on localhost.
"""
import os
import sys
import wave

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from smai.v1 import asr_pb2, asr_pb2_grpc, tts_pb2, tts_pb2_grpc

address = os.environ.get("SMAI_GRPC_ADDR", "localhost:50051")
ca_file = os.environ.get("SMAI_CA_CERT")
if ca_file:
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    channel = grpc.secure_channel(address, credentials)
else:
    channel = grpc.insecure_channel(address)

# The key as metadata; ("authorization", "Bearer smai_...") works the same.
metadata = [("x-api-key", os.environ["SMAI_API_KEY"])]
tts = tts_pb2_grpc.TextToSpeechStub(channel)
asr = asr_pb2_grpc.SpeechRecognitionStub(channel)

# Text to speech: the whole file, then the same text sentence by sentence.
text = "Hello! This sentence was spoken by a machine."
speech, call = tts.Synthesize.with_call(
    tts_pb2.SynthesizeRequest(text=text, voice="joe", response_format="wav"), metadata=metadata
)
with open("hello.wav", "wb") as f:
    f.write(speech.audio)
limits = dict(call.initial_metadata())
print(f"synthesized {speech.audio_seconds:.2f} s; requests left this minute:",
      limits.get("x-ratelimit-remaining-requests"))
for chunk in tts.StreamingSynthesize(tts_pb2.SynthesizeRequest(text=text, voice="joe"), metadata=metadata):
    print(f"sentence {chunk.segment}: {chunk.text.strip()!r}, {len(chunk.audio)} bytes of s16le")

# Speech to text: a whole file in any format REST takes.
with open("hello.wav", "rb") as f:
    answer = asr.Recognize(asr_pb2.RecognizeRequest(audio=f.read()), metadata=metadata)
print("transcript:", answer.text)

# The same key as a bearer token; ListVoices names only the voices the key may use.
bearer = [("authorization", "Bearer " + os.environ["SMAI_API_KEY"])]
voices = tts.ListVoices(tts_pb2.ListVoicesRequest(), metadata=bearer)
print("voices (bearer):", ", ".join(v.id for v in voices.voices))

# Live: a 16-bit mono WAV sent in 100 ms chunks; half-closing the requests ends the audio.
def live_requests(path):
    with wave.open(path, "rb") as w:
        rate = w.getframerate()
        yield asr_pb2.StreamingRecognizeRequest(config=asr_pb2.StreamingRecognitionConfig(
            encoding=asr_pb2.LINEAR_PCM, sample_rate_hz=rate, interim_results=True))
        while frames := w.readframes(rate // 10):
            yield asr_pb2.StreamingRecognizeRequest(audio=frames)

if len(sys.argv) > 1:
    for response in asr.StreamingRecognize(live_requests(sys.argv[1]), metadata=metadata):
        if response.HasField("result") and response.result.is_final:
            r = response.result
            print(f"final {r.utterance} [{r.start_ms} - {r.end_ms} ms]:{r.text}")

# A refused call carries the smai error code in google.rpc.ErrorInfo.
try:
    tts.Synthesize(tts_pb2.SynthesizeRequest(text=text, voice="joe"), metadata=[("x-api-key", "smai_wrong")])
except grpc.RpcError as error:
    status = rpc_status.from_call(error)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            print(f"refused: {error.code().name} reason={info.reason} domain={info.domain}")
