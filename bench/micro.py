"""Micro-benchmark of the routing plugin's Python hot path, outside Kamailio.

Runs ``pipeline.route_initial_invite`` + ``RedisStore.release`` (what one origination
call costs the plugin in redis and Python, without the KSR calls) in a loop against a
private redis, for the code at git HEAD and for HEAD + bench/proposals, and profiles it
with cProfile.  Usage: .venv/bin/python bench/micro.py [calls] > bench/results/<stamp>/micro.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rungs

PORT = 26381
CHILD = r'''
import cProfile, io, json, pstats, sys, time
sys.path.insert(0, sys.argv[1])
from routing.tables import admin
from routing.call import pipeline
from routing.tables.model import Agent, Did, Direction, Trunk
from routing.call.request import SipRequest
from routing.ops.runtime import RuntimeSettings
from routing.tables.store import RedisStore, connect
n = int(sys.argv[3])
c = connect("127.0.0.1", int(sys.argv[2]), timeout_ms=2000, connect_timeout_ms=2000)
c.flushdb()
admin.put_trunk(c, Trunk(name="carrier", direction=Direction.BOTH, max_calls=10**9, cidrs=("127.0.2.11/32",)))
admin.put_agent(c, Agent(name="bot", uris=("sip:127.0.2.21:25080",), cidrs=("127.0.2.21/32",), max_calls=10**9,
                         probe=False))
admin.put_did(c, Did(number="+14155550100", trunk="carrier", agent="bot"))
store = RedisStore(connect("127.0.0.1", int(sys.argv[2])), "micro")
rt = RuntimeSettings(node="micro", lease_ttl_s=3660)
def req(i):
    return SipRequest(method="INVITE", call_id=f"{i}-micro@127.0.2.11", src_ip="127.0.2.11", src_port=25070,
                      proto="udp", ruri_user="+14155550100", to_user="+14155550100", from_user="+14155550123",
                      from_name="Caller")
def one(i):
    d = pipeline.route_initial_invite(req(i), store, rt)
    assert type(d).__name__ == "Relay", d
    d.plan.dumps()
    store.release(d.plan.call_id)
for i in range(200):
    one(-i - 1)
t0, c0 = time.perf_counter(), time.process_time()
for i in range(n):
    one(i)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
prof = cProfile.Profile()
prof.enable()
for i in range(n, n + min(n, 2000)):
    one(i)
prof.disable()
s = io.StringIO()
pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
top = pstats.Stats(prof).sort_stats("cumulative")
cum = {}
for (f, line, fn), (cc, nc, tt, ct, callers) in top.stats.items():
    if fn in ("topology", "did", "acquire", "release", "route_initial_invite", "classify_source", "dumps",
              "execute", "execute_command", "from_uri_user", "originate"):
        key = f"{Path(f).name}:{fn}"
        cum[key] = round(1e6 * ct / min(n, 2000), 1)
print(json.dumps({"calls": n, "wall_us_per_call": round(1e6 * wall / n, 1), "cpu_us_per_call": round(1e6 * cpu / n, 1),
                  "cumulative_us_per_call": cum, "cprofile_tottime": s.getvalue()}))
'''.replace("Path(f)", "__import__('pathlib').Path(f)")


def main() -> int:
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 3000), indent=1))
    return 0


def measure(n: int = 3000) -> dict:
    proposals = sorted((rungs.BENCH / "proposals").glob("*.patch"))
    out = {}
    with tempfile.TemporaryDirectory(prefix="edge-micro-") as tmp:
        redis = subprocess.Popen(["redis-server", "--port", str(PORT), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(0.5)
            trees = {"HEAD": [], **({"HEAD+proposals": proposals} if proposals else {})}
            for name, patches in trees.items():
                src = rungs.build_tree(Path(tmp) / name.replace("+", "_"), "HEAD", patches)
                res = subprocess.run([str(rungs.VENV_PY), "-c", CHILD, str(src), str(PORT), str(n)],
                                     capture_output=True, text=True, timeout=600)
                if res.returncode != 0:
                    out[name] = {"error": res.stderr[-2000:]}
                else:
                    out[name] = json.loads(res.stdout.strip().splitlines()[-1])
        finally:
            rungs.killpg(redis.pid)
    return out


if __name__ == "__main__":
    sys.exit(main())
