"""Instructions per channel message under callgrind: the tasklet ping-pong of
``tasklets.py channel`` (or ``select``: the receiving side selects over its
channel and an idle one), run for N and 2N round trips; the difference of the
two totals over 2N messages leaves out start-up and shutdown.

    python benchmarks/callgrind_channel.py [channel|select] [N]

Needs valgrind. Each round trip is two messages (a send and a receive each
way)."""
import os
import re
import subprocess
import sys
import tempfile


def pingpong(mode, n):
    import weft.stackless as stackless
    from weft.select import recv, select

    ping, pong, idle = stackless.channel(), stackless.channel(), stackless.channel()

    def ponger():
        r, s = ping.receive, pong.send
        if mode == "select":
            cases = [recv(ping), recv(idle)]
            for _ in range(n):
                s(select(cases)[1])
        else:
            for _ in range(n):
                s(r())

    stackless.tasklet(ponger)()
    r, s = pong.receive, ping.send
    for i in range(n):
        s(i)
        r()


def total_ir(mode, n):
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={os.path.join(d, 'cg')}",
             sys.executable, __file__, "--run", mode, str(n)],
            capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main(argv):
    if argv[:1] == ["--run"]:
        pingpong(argv[1], int(argv[2]))
        return
    mode = argv[0] if argv else "channel"
    n = int(argv[1]) if len(argv) > 1 else 10_000
    a, b = total_ir(mode, n), total_ir(mode, 2 * n)
    print(f"{mode}: {(b - a) / (2 * n):.0f} instructions per message "
          f"(callgrind, {n} vs {2 * n} round trips, {sys.version.split()[0]})")


if __name__ == "__main__":
    main(sys.argv[1:])
