"""Smoke test of an installed weft wheel (scripts/test-wheels.sh runs it on
every AArch64 wheel under qemu-user, and on the x86-64 ones too).

Checks (scripts/test-wheels.sh also fails a run that prints a traceback,
even at exit): weft imports from the installed wheel (not the source tree), a
greenlet switch there and back with values, a popen gateway round trip
(the peer is a new interpreter of the same kind: under qemu on AArch64), and
a tasklet channel round trip once weft.stackless exists. Prints
"smoke: N passed, N failed" last; exits 1 on any failure.
"""
import importlib.util
import platform
import sys
import traceback

passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        detail = fn()
    except Exception:
        failed += 1
        print(f"FAIL {name}")
        traceback.print_exc()
    else:
        passed += 1
        print(f"ok   {name}" + (f": {detail}" if detail else ""))


def imported():
    import weft
    import weft._weft
    so = weft._weft.__file__
    if "site-packages" not in so:
        raise AssertionError(f"weft._weft comes from {so}, not from an installed wheel")
    return f"weft {weft.__version__} on {platform.machine()} CPython {platform.python_version()}, {so}"


def switch():
    from weft.greenlet import getcurrent, greenlet

    seen = []

    def child(x):
        seen.append(x)
        y = getcurrent().parent.switch(x + 1)
        seen.append(y)
        return y * 2

    g = greenlet(child)
    assert g.switch(1) == 2
    assert g.switch(10) == 20
    assert g.dead and seen == [1, 10], seen
    return "switched there and back twice"


def gateway():
    import weft.execnet as execnet

    gw = execnet.makegateway("popen")
    try:
        ch = gw.remote_exec(
            "import platform, sys\n"
            "channel.send((platform.machine(), sys.version_info[:2]))\n"
            "channel.send(channel.receive() * 2)\n"
        )
        machine, version = ch.receive(timeout=120)
        ch.send(21)
        assert ch.receive(timeout=120) == 42
        assert tuple(version) == sys.version_info[:2], (version, sys.version_info)
        assert machine == platform.machine(), (machine, platform.machine())
    finally:
        gw.exit()
    return f"popen peer {machine} {version[0]}.{version[1]}, 21 -> 42"


def tasklets():
    import weft.stackless as stackless

    out = []
    ch = stackless.channel()

    def sender():
        ch.send(41)

    def receiver():
        out.append(ch.receive() + 1)

    stackless.tasklet(sender)()
    stackless.tasklet(receiver)()
    stackless.run()
    assert out == [42], out
    return "41 -> 42 over a channel"


check("import", imported)
check("greenlet switch", switch)
check("popen gateway round trip", gateway)
if importlib.util.find_spec("weft.stackless") is not None:
    check("tasklet channel round trip", tasklets)
else:
    print("skip tasklet channel round trip: weft.stackless is not built yet")
print(f"smoke: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
