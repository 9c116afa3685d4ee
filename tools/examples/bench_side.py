"""The request loop both Python sides of the benches share (tools/src/bench.rs `Side`): load the
model, print {"load_s": ..., "versions": {...}} (the installed versions of `packages`: pip takes
a peer's runtime, CTranslate2 or onnxruntime, at its newest unless pinned, and a bench's figures
hold for the versions it ran), then answer one JSON request per line on stdin with one JSON line:
"peak_rss" with {"peak_rss_mib"}, anything else with what `handle` returns for it."""
import json
import resource
import sys
import time
from importlib.metadata import PackageNotFoundError, version


def installed(package):
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def serve(load, handle, packages=()):
    started = time.perf_counter()
    model = load()
    load_s = time.perf_counter() - started
    print(json.dumps({"load_s": load_s, "versions": {p: installed(p) for p in packages}}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request == "peak_rss":
            answer = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        else:
            answer = handle(model, request)
        print(json.dumps(answer), flush=True)
