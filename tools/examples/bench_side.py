"""The request loop both Python sides of the benches share (tools/src/bench.rs `Side`): load the
model, print {"load_s": ...}, then answer one JSON request per line on stdin with one JSON line:
"peak_rss" with {"peak_rss_mib"}, anything else with what `handle` returns for it."""
import json
import resource
import sys
import time


def serve(load, handle):
    started = time.perf_counter()
    model = load()
    print(json.dumps({"load_s": time.perf_counter() - started}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request == "peak_rss":
            answer = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        else:
            answer = handle(model, request)
        print(json.dumps(answer), flush=True)
