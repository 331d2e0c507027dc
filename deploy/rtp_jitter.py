#!/usr/bin/env python3
"""Inter-arrival deviation of the RTP streams in a capture, measured the way selfprov-load
measures it: for every in-order packet after a stream's first, |arrival gap - 20 ms x sequence
step|, all streams pooled; p50/p99/p99.9/max in ms, as one JSON line.

Input: tshark's fields `frame.time_epoch udp.srcport udp.dstport rtp.seq rtp.p_type` (tab separated)
on stdin. Only audio (payload type 0 or 8) counts, as in selfprov-load. Used by deploy/bench.sh's
SIPp cross-check; the capture is independent of both load generators.
"""
import json
import sys

PTIME = 0.020
last = {}
devs = []
streams = set()
packets = 0
for line in sys.stdin:
    f = line.rstrip("\n").split("\t")
    if len(f) < 5 or not f[3] or f[4] not in ("0", "8"):
        continue
    t, src, dst, seq = float(f[0]), f[1], f[2], int(f[3])
    key = (src, dst)
    streams.add(key)
    packets += 1
    prev = last.get(key)
    if prev is not None:
        step = (seq - prev[1]) & 0xFFFF
        if 0 < step < 0x8000:
            devs.append(abs((t - prev[0]) - PTIME * step))
            last[key] = (t, seq)
        continue
    last[key] = (t, seq)
devs.sort()


def pct(p):
    if not devs:
        return None
    return round(devs[min(len(devs) - 1, int(p * len(devs)))] * 1000, 3)


print(json.dumps({
    "streams": len(streams),
    "packets": packets,
    "samples": len(devs),
    "p50_ms": pct(0.50),
    "p99_ms": pct(0.99),
    "p999_ms": pct(0.999),
    "max_ms": round(devs[-1] * 1000, 3) if devs else None,
}))
