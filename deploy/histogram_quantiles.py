"""Reads a Prometheus/OpenMetrics text exposition on stdin and prints, as JSON, the count and the
p50/p90/p99 (in ms, linearly interpolated within the bucket) of selfprov's latency histograms
(selfprov_binding_seconds, selfprov_pbx_delivery_seconds), one entry per label set."""
import json
import sys

WANTED = ("selfprov_binding_seconds", "selfprov_pbx_delivery_seconds")
hist = {}
for line in sys.stdin:
    if line.startswith("#") or "_bucket{" not in line:
        continue
    name, rest = line.split("_bucket{", 1)
    if name not in WANTED:
        continue
    labels, value = rest.rsplit("} ", 1)
    parts = labels.split(",")
    le = [p.split("=", 1)[1].strip('"') for p in parts if p.startswith("le=")][0]
    key = name + "{" + ",".join(p for p in parts if not p.startswith("le=")) + "}"
    hist.setdefault(key, []).append((float("inf") if le == "+Inf" else float(le), float(value)))
out = {}
for key, buckets in hist.items():
    buckets.sort()
    total = buckets[-1][1]
    q = {"count": int(total)}
    for p in (0.5, 0.9, 0.99):
        want, lo_le, lo_n = p * total, 0.0, 0.0
        for le, n in buckets:
            if total > 0 and n >= want:
                hi = lo_le if le == float("inf") else le
                frac = 0.0 if n == lo_n else (want - lo_n) / (n - lo_n)
                q[f"p{int(p * 100)}_ms"] = round((lo_le + frac * (hi - lo_le)) * 1e3, 2)
                break
            lo_le, lo_n = le, n
    out[key] = q
print(json.dumps(out))
