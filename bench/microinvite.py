"""The initial INVITE's Python entry (``Edge.ksr_initial_invite``) outside Kamailio: the whole
adapter path (snapshot, routing decision, relay, send) over a stand-in ``KSR`` whose functions do
nothing, against a private redis, timed in thread CPU and optionally profiled with cProfile.

``bench/micro.py`` times the routing decision alone; this one adds the Kamailio adapter's Python
(the plan and record state, the media flags, the ~60 KSR calls as Python calls).  Kamailio's
workers run the same code several times slower (cold caches between messages, and the C work of
``t_relay`` and the rtpengine offer inside the entry), so read its figures as a proxy for
``BYOC_BENCH_PYPROF_TIMING=1``, and compare trees in one sitting, interleaved.

Usage: ``.venv/bin/python bench/microinvite.py [TREE ...] [--calls N] [--profile]``; each ``TREE``
is a directory holding ``routing/`` (default: this checkout), e.g. a ``git archive main`` export.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REDIS_HOST, PORT = "127.0.2.241", 26382

CHILD = r'''
import cProfile, io, os, pstats, sys, time, types
root, port, n, profile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
sys.path.insert(0, root)
SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.2.11\r\ns=-\r\nc=IN IP4 127.0.2.11\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
MB = ("INVITE sip:+14155550100@127.0.2.1:25060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.2.11:25070;branch=z9hG4bK-1\r\n"
      "From: Caller <sip:+14155550123@127.0.2.11>;tag=1\r\nTo: <sip:+14155550100@127.0.2.1>\r\nCall-ID: x\r\n"
      "CSeq: 1 INVITE\r\nContact: <sip:127.0.2.11:25070>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"
      "Content-Length: 100\r\n\r\n" + SDP)
pvd = {"$rm": "INVITE", "$si": "127.0.2.11", "$sp": 25070, "$pr": "udp", "$rU": "+14155550100",
       "$ru": "sip:+14155550100@127.0.2.1:25060", "$tU": "+14155550100", "$tu": "sip:+14155550100@127.0.2.1",
       "$fU": "+14155550123", "$fn": "Caller", "$fd": "127.0.2.11", "$rb": SDP, "$mb": MB, "$cs": "1"}
def ok(*args): return 1
def no(*args): return -1
class Group:  # every KSR.<module>.<function> answers 1 (success)
    def __getattr__(self, name): return ok
ksr = types.ModuleType("KSR")
for group in ("tm", "sl", "hdr", "rr", "dialog", "uac", "htable", "xhttp_prom", "textops", "siputils", "rtpengine", "tmx"):
    setattr(ksr, group, Group())
ksr.pv = types.SimpleNamespace(get=pvd.get, sets=pvd.__setitem__, seti=pvd.__setitem__, unset=lambda n: pvd.pop(n, None))
ksr.hdr.is_present = no
ksr.siputils.has_totag = no
for level in ("info", "err", "warn", "dbg", "notice", "crit"):
    setattr(ksr, level, lambda text: None)
sys.modules["KSR"] = ksr
from routing.tables import admin
from routing.tables.model import Agent, Did, Direction, Trunk
from routing.tables.store import connect
from routing.ops.runtime import RuntimeSettings
from routing.kamailio import entry
c = connect("127.0.2.241", port, timeout_ms=2000, connect_timeout_ms=2000)
c.flushdb()
admin.put_trunk(c, Trunk(name="carrier", direction=Direction.BOTH, max_calls=10**9, cidrs=("127.0.2.11/32",)))
admin.put_agent(c, Agent(name="bot", uris=("sip:127.0.2.21:25080",), cidrs=("127.0.2.21/32",), max_calls=10**9, probe=False))
admin.put_did(c, Did(number="+14155550100", trunk="carrier", agent="bot"))
edge = entry.Edge(RuntimeSettings(node="micro", lease_ttl_s=3660, redis_host="127.0.2.241", redis_port=port))
edge.child_init(1)
store = edge.worker.store
def loop(first, count):
    spent = 0.0
    for i in range(first, first + count):
        pvd["$ci"] = f"{i}-micro@127.0.2.11"
        t0 = time.thread_time()
        edge.ksr_initial_invite(None)
        spent += time.thread_time() - t0
        store.release(pvd["$ci"])  # outside the timed entry
    return spent
loop(10**6, 300)
assert pvd.get("$avp(edge_plan)"), "the INVITE was not relayed"
best = min(loop(k * n, n) for k in range(3))
print(f"{root}: ksr_initial_invite {1e6 * best / n:.1f} us thread CPU per call (best of 3 x {n})")
if profile:
    prof = cProfile.Profile(time.thread_time)
    prof.enable()
    loop(10 * n, n)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
    print(out.getvalue())
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="*", default=[str(Path(__file__).resolve().parents[1])])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis = subprocess.Popen(["redis-server", "--port", str(PORT), "--bind", REDIS_HOST, "--save", "",
                                  "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            for tree in args.trees:
                subprocess.run([sys.executable, "-c", CHILD, tree, str(PORT), str(args.calls),
                                "1" if args.profile else "0"], check=True)
        finally:
            redis.terminate()
            redis.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
