"""Gateway workloads over popen, weft.execnet against execnet, one peer per run:

    python benchmarks/gateway_popen.py weft
    python benchmarks/gateway_popen.py execnet

startup: new gateway to the first remote_exec result; roundtrip: echo of a
small int; small-dicts: one-way rate of a 3-key dict; bulk: 1 MiB bytes one
way. Run both peers back to back (or interleaved) and compare.
"""
import sys, time
mod = sys.argv[1]
if mod == "weft":
    import weft.execnet as execnet
else:
    import execnet
t0 = time.perf_counter()
gw = execnet.makegateway("popen")
ch = gw.remote_exec("channel.send(1)")
ch.receive()
startup = time.perf_counter() - t0
ch = gw.remote_exec("""
while 1:
    x = channel.receive()
    if x is None: break
    channel.send(x)
""")
N = 2000
t = time.perf_counter()
for i in range(N):
    ch.send(i); ch.receive()
rt = (time.perf_counter() - t) / N
ch.send(None)
ch = gw.remote_exec("""
n = 0
while 1:
    x = channel.receive()
    if x is None: break
    n += 1
channel.send(n)
""")
M = 20000
d = {"a": 1, "b": [1, 2, 3], "c": "hello"}
t = time.perf_counter()
for i in range(M):
    ch.send(d)
ch.send(None)
assert ch.receive() == M
rate = M / (time.perf_counter() - t)
ch = gw.remote_exec("""
while 1:
    x = channel.receive()
    if x is None: break
channel.send(1)
""")
blob = b"x" * (1 << 20)
K = 200
t = time.perf_counter()
for i in range(K):
    ch.send(blob)
ch.send(None); ch.receive()
bulk = K / (time.perf_counter() - t)
gw.exit()
print(f"{mod:8s} startup {startup*1000:.1f} ms  roundtrip {rt*1e6:.1f} us  small-dicts {rate:,.0f}/s  bulk {bulk:.0f} MiB/s")
