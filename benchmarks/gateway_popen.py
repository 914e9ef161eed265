"""Gateway workloads over popen, weft.execnet against execnet, interleaved:

    python benchmarks/gateway_popen.py [--rounds N] [--quick]

startup: new gateway to the first remote_exec result; roundtrip: echo of a
small int; small: one-way rate of a 3-key dict; bulk: 1 MiB bytes one way.
Each round runs each peer in a fresh interpreter (weft._tooling.bench.gateway).
"""
import json
import subprocess
import sys


def run(peer, quick):
    out = subprocess.run([sys.executable, "-m", "weft._tooling.bench.gateway", peer] + (["--quick"] if quick else []),
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv):
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 2
    quick = "--quick" in argv
    for r in range(rounds):
        for peer in ("weft", "execnet"):
            f = run(peer, quick)
            print(f"round {r + 1} {peer:8s} startup {f['startup'] * 1e3:6.1f} ms  roundtrip {f['roundtrip'] * 1e6:6.1f} µs"
                  f"  small {f['small_per_s']:9,.0f}/s  bulk {f['bulk_mib_per_s']:5.0f} MiB/s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
