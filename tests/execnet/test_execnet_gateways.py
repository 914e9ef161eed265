"""Gateways: specs, process options, status, output, death, termination."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import weft.execnet as execnet
from weft.execnet import XSpec


def test_xspec_parsing():
    spec = XSpec("popen//python=python3//chdir=/tmp//env:FOO=bar//dont_write_bytecode")
    assert spec.popen is True
    assert spec.python == "python3"
    assert spec.chdir == "/tmp"
    assert spec.env == {"FOO": "bar"}
    assert spec.dont_write_bytecode is True
    assert spec.ssh is None and spec.whatever is None
    assert spec == XSpec(str(spec)) and hash(spec) == hash(XSpec(str(spec)))
    spec.id = "x"
    assert spec.id == "x"
    with pytest.raises(ValueError):
        XSpec("popen//popen")


def test_rinfo_and_status(gw):
    info = gw._rinfo()
    assert info.executable and info.pid != os.getpid()
    assert tuple(info.version_info[:2]) == sys.version_info[:2]
    assert info.platform == sys.platform
    for _ in range(200):  # the rinfo task may still be finishing
        status = gw.remote_status()
        if status.numexecuting == 0:
            break
        time.sleep(0.01)
    assert status.numexecuting == 0
    assert gw.id == "gw0" and gw.spec.popen
    assert "gw0" in repr(gw)


def test_arbitrary_attributes(gw):
    gw.node = "anything"
    assert gw.node == "anything"


def test_popen_options(group, tmp_path):
    gw = group.makegateway("popen//chdir=%s//env:WEFT_T=42//nice=3//dont_write_bytecode"
                           % (tmp_path / "sub"))
    ch = gw.remote_exec("""
        import os, sys
        channel.send((os.getcwd(), os.environ.get("WEFT_T"), os.nice(0),
                      sys.dont_write_bytecode))
    """)
    cwd, env, nice, dwb = ch.receive(10)
    assert cwd == str(tmp_path / "sub")
    assert env == "42"
    assert nice >= 3
    assert dwb is True


def test_python_option(group):
    gw = group.makegateway("popen//python=%s" % sys.executable)
    assert gw._rinfo().executable


def test_main_thread_only(group):
    gw = group.makegateway("popen//execmodel=main_thread_only")
    for _ in range(5):
        ch = gw.remote_exec(
            "import threading; channel.send(threading.current_thread() is threading.main_thread())")
        assert ch.receive(10) is True
        ch.waitclose(10)


def test_thread_model_runs_concurrently(gw):
    a = gw.remote_exec("channel.send(channel.receive())")
    b = gw.remote_exec("channel.send(channel.receive())")
    b.send(2)
    assert b.receive(10) == 2
    a.send(1)
    assert a.receive(10) == 1


def test_worker_output_reaches_parent(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent("""
        import weft.execnet as execnet
        gw = execnet.makegateway("popen")
        ch = gw.remote_exec('''
            import os, sys
            print("to-stdout-via-print")
            sys.stderr.write("to-stderr\\\\n")
            os.write(1, b"raw-fd-1\\\\n")
            channel.send("done")
        ''')
        assert ch.receive(10) == "done"
        gw.exit()
        execnet.default_group.terminate(5)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "to-stdout-via-print" in proc.stdout
    assert "raw-fd-1" in proc.stdout
    assert "to-stderr" in proc.stderr


def test_worker_cannot_read_parent_stdin(gw):
    ch = gw.remote_exec("import sys; channel.send(sys.stdin.read())")
    assert ch.receive(10) == ""


def _pid(gw):
    return gw._rinfo().pid


def test_killed_mid_message(gw):
    """The worker writes the header and part of a 1 MB frame, then SIGKILLs itself."""
    ch = gw.remote_exec("""
        import os, signal
        from weft_boot_wire import pack_message, CHANNEL_DATA
        frame = pack_message(CHANNEL_DATA, channel.id, b"x" * 1000000)
        channel.gateway._io.write(frame[:5000])
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    other = gw.remote_exec("channel.receive()")
    ended = []
    other.setcallback(ended.append, endmarker="END")
    with pytest.raises(execnet.RemoteError) as excinfo:
        ch.receive(20)
    assert "SIGKILL" in str(excinfo.value)
    assert isinstance(excinfo.value, EOFError)
    deadline = time.monotonic() + 10
    while not ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended == ["END"]
    with pytest.raises(EOFError):
        other.waitclose(5)


def test_killed_from_outside_while_streaming(gw):
    ch = gw.remote_exec("""
        import os
        channel.send(os.getpid())
        while True:
            channel.send(b"y" * 100000)
    """)
    pid = ch.receive(10)
    ch.receive(10)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(EOFError, match="SIGKILL"):
        while True:
            ch.receive(20)


def test_worker_exit_code_reported(gw):
    ch = gw.remote_exec("import os; os._exit(3)")
    with pytest.raises(execnet.RemoteError, match="exited with code 3"):
        ch.receive(20)
    assert not gw.hasreceiver()


def test_send_after_worker_death(gw):
    ch = gw.remote_exec("import os; channel.receive(); os._exit(1)")
    ch.send(None)
    with pytest.raises(EOFError):
        ch.waitclose(20)
    with pytest.raises(OSError):
        ch.send(1)
    with pytest.raises(OSError):
        gw.remote_exec("pass")


def test_exit_is_orderly(group):
    gw = group.makegateway("popen")
    ch = gw.remote_exec("channel.receive()")
    gw.exit()
    ch.waitclose(10)  # an orderly end is not an error
    with pytest.raises(EOFError) as excinfo:
        ch.receive(10)
    assert not isinstance(excinfo.value, execnet.RemoteError)
    assert gw.join(10)
    assert gw._io.wait(10) == 0


@pytest.mark.parametrize("model", ["thread", "main_thread_only"])
def test_group_terminate_stuck_worker(model):
    group = execnet.Group()
    gw = group.makegateway("popen//execmodel=%s" % model)
    ch = gw.remote_exec("""
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        channel.send("stuck")
        while True:
            time.sleep(1)
    """)
    assert ch.receive(10) == "stuck"
    t0 = time.monotonic()
    group.terminate(timeout=1.0)
    assert time.monotonic() - t0 < 4.0
    assert gw._io.popen.poll() is not None
    assert len(group) == 0


def test_group_container(group):
    a = group.makegateway("popen//id=a")
    b = group.makegateway("popen")
    assert b.id == "gw0"
    assert group["a"] is a and group[1] is b and "a" in group and a in group
    assert len(group) == 2 and list(group) == [a, b]
    with pytest.raises(ValueError):
        group.set_execmodel("thread")
    a.exit()
    assert "a" not in group


def test_via(group):
    proxy = group.makegateway("popen//id=p")
    gw = group.makegateway("popen//via=p")
    assert gw._rinfo().pid != proxy._rinfo().pid
    ch = gw.remote_exec("import os; channel.send(os.getppid())")
    assert ch.receive(10) == proxy._rinfo().pid


def test_dumps_loads():
    for obj in [1, "x", [1, (2, b"3")], {"a": None}]:
        assert execnet.loads(execnet.dumps(obj)) == obj
    import io
    f = io.BytesIO()
    execnet.dump(f, [1, 2])
    f.seek(0)
    assert execnet.load(f) == [1, 2]
    with pytest.raises(execnet.DumpError, match="Custom"):
        execnet.dumps(type("Custom", (), {})())
    with pytest.raises(execnet.LoadError):
        execnet.loads(b"\x02garbage")
    assert issubclass(execnet.LoadError, execnet.DataFormatError)


def test_remote_exec_function_checks():
    g = execnet.Group()
    try:
        gw = g.makegateway()

        def bad_arg(x):
            pass

        with pytest.raises(ValueError, match="channel"):
            gw.remote_exec(bad_arg)
        with pytest.raises(TypeError):
            gw.remote_exec("pass", x=1)
    finally:
        g.terminate(2)


def test_block_until_is_the_only_wait(gw):
    from weft.execnet import _wait

    calls = []

    def hook(event, timeout):
        calls.append(timeout)
        return event.wait(timeout)

    _wait.install(hook)
    try:
        ch = gw.remote_exec("import time; time.sleep(0.2); channel.send(1); channel.receive()")
        assert ch.receive() == 1
        assert None in calls
        with pytest.raises(ch.TimeoutError):
            ch.receive(0.05)
        with pytest.raises(ch.TimeoutError):
            ch.waitclose(0.05)
        assert len([t for t in calls if t is not None and t <= 0.05]) >= 2
        ch.send(None)
        ch.waitclose()
    finally:
        _wait.uninstall()


def test_bootline_copies_agree():
    from weft._bootstrap import socketserver
    from weft.execnet import _spawn

    assert socketserver._BOOTLINE == _spawn._BOOTLINE


def test_100mb_payload(gw):
    payload = os.urandom(1 << 20) * 100
    ch = gw.remote_exec("""
        import hashlib
        data = channel.receive()
        channel.send((len(data), hashlib.sha256(data).hexdigest()))
        channel.send(data)
    """)
    import hashlib

    t0 = time.monotonic()
    ch.send(payload)
    assert ch.receive(60) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert ch.receive(60) == payload
    assert time.monotonic() - t0 < 60


def test_worker_does_not_outlive_a_dead_parent(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent("""
        import os, weft.execnet as execnet
        gw = execnet.makegateway("popen")
        ch = gw.remote_exec('''
            import os, time
            channel.send(os.getpid())
            while True:
                time.sleep(0.1)
        ''')
        print(ch.receive(10), flush=True)
        os._exit(0)  # no cleanup at all
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=30)
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("worker %d still running 15 s after its parent died" % pid)


def test_worker_importing_weft_shares_the_boot_modules(gw):
    """Remote code that imports weft.execnet sees the classes its channel uses."""
    ch = gw.remote_exec("""
        import weft.execnet as execnet
        ok = isinstance(channel, execnet.Channel)
        try:
            execnet.dumps(object())
        except execnet.DumpError:
            caught = True
        channel.send((ok, caught))
    """)
    assert ch.receive(10) == (True, True)


def test_load_reads_one_value_at_a_time():
    import io
    f = io.BytesIO()
    execnet.dump(f, [1, b"QQQ", {2: 3.5}, 2**80])
    execnet.dump(f, "second")
    f.seek(0)
    assert execnet.load(f) == [1, b"QQQ", {2: 3.5}, 2**80]
    assert execnet.load(f) == "second"
    with pytest.raises(execnet.LoadError):
        execnet.load(io.BytesIO(b"\x02F\x00"))


def test_load_knows_every_opcode_the_codec_has():
    """execnet.load skips values with the codec's own opcode table: one
    value of every opcode (the Python-2 ones included) loads one at a time."""
    import io
    from weft._bootstrap import wire
    assert sorted(wire.OPERAND_SIZE) == list(range(0x40, 0x55))  # "@" .. "T"
    values = [None, True, False, 7, 2**70, 1.5, 2j, b"b", "s", (1,), [2], {3: 4},
              {5}, frozenset([6])]
    py2 = [b"\x02M\x00\x00\x00\x01xQ", b"\x02S\x00\x00\x00\x01yQ",
           b"\x02G\x00\x00\x00\x05Q", b"\x02I\x00\x00\x00\x0212Q"]
    f = io.BytesIO(b"".join([execnet.dumps(v) for v in values] + py2))
    for v in values:
        assert execnet.load(f) == v
    assert [execnet.load(f) for _ in py2] == [b"x", "y", 5, 12]
    assert f.read() == b""


def test_popen_makegateway_returns_once_the_worker_booted():
    """As execnet: makegateway waits for the worker's boot acknowledgement, so
    a worker that cannot start fails makegateway itself, saying how it ended."""
    import weft.execnet as execnet
    group = execnet.Group()
    try:
        with pytest.raises(EOFError) as info:
            group.makegateway("popen//chdir=/proc/self/no/such/dir")
        assert "failed to start" in str(info.value) and "exited with code 1" in str(info.value)
        gw = group.makegateway("popen")
        # booted: the worker process exists and answers at once
        assert gw.remote_exec("channel.send(1)").receive(10) == 1
    finally:
        group.terminate(5)
