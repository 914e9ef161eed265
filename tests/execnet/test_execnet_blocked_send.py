"""Faults while a send is blocked (issue 10): a stopped worker and a thread
stuck sending to it must not hang terminate, exit or interpreter exit;
Ctrl-C reaches a main thread blocked in a send; a frame cut short ends the
gateway with an error that says so.  Each case runs in a subprocess with a
timeout; threads are ordered with events and the pipe's fill level."""
import os
import subprocess
import sys
import textwrap

import pytest

CODECS = ["rust", "python"]

PRELUDE = textwrap.dedent('''
    import fcntl, os, signal, sys, termios, threading, time
    import weft.execnet as execnet

    group = execnet.Group()
    gw = group.makegateway("popen")
    ch = gw.remote_exec("channel.send(__import__('os').getpid()); channel.receive()")
    pid = ch.receive(10)
    os.kill(pid, signal.SIGSTOP)
    BIG = b"x" * (64 << 20)

    def pipe_is_full():
        # FIONREAD on the write end of a pipe: bytes the worker has not read
        n = bytearray(4)
        fcntl.ioctl(gw._io._wfd, termios.FIONREAD, n)
        return int.from_bytes(n, sys.byteorder) >= 65536

    def wait_full():
        deadline = time.monotonic() + 20
        while not pipe_is_full():
            assert time.monotonic() < deadline, "the send never filled the pipe"
            time.sleep(0.01)

    errors = []
    started = threading.Event()
    def blocked_sender():
        started.set()
        try:
            ch.send(BIG)
        except BaseException as exc:
            errors.append(exc)
''')


def run(body, codec, timeout=40):
    env = dict(os.environ)
    env.pop("WEFT_PURE_PYTHON_CODEC", None)
    if codec == "python":
        env["WEFT_PURE_PYTHON_CODEC"] = "1"
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("codec", CODECS)
def test_terminate_returns_with_a_blocked_writer(codec):
    out = run('''
        t = threading.Thread(target=blocked_sender, daemon=True)
        t.start()
        started.wait()
        wait_full()
        t0 = time.monotonic()
        group.terminate(timeout=2)
        took = time.monotonic() - t0
        t.join(10)
        assert not t.is_alive()
        assert errors and isinstance(errors[0], OSError), errors
        print("terminate took %.2f s" % took)
        assert took < 5, took
    ''', codec)
    assert "terminate took" in out
    print(out)


# the pure-Python writer takes the same exit/close paths: its variant runs
# in test_terminate_returns_with_a_blocked_writer (CI time)
@pytest.mark.parametrize("codec", ["rust"])
def test_exit_does_not_wait_for_a_blocked_writer(codec):
    run('''
        t = threading.Thread(target=blocked_sender, daemon=True)
        t.start()
        started.wait()
        wait_full()
        t0 = time.monotonic()
        gw.exit()
        assert time.monotonic() - t0 < 3
        t.join(10)
        assert not t.is_alive() and errors
        os.kill(pid, signal.SIGKILL)
    ''', codec)


# the pure-Python writer takes the same exit/close paths: its variant runs
# in test_terminate_returns_with_a_blocked_writer (CI time)
@pytest.mark.parametrize("codec", ["rust"])
def test_interpreter_exit_with_a_blocked_writer(codec):
    # the atexit terminate must not hang (the sender is a daemon thread)
    run('''
        t = threading.Thread(target=blocked_sender, daemon=True)
        t.start()
        started.wait()
        wait_full()
        print("exiting")
    ''', codec, timeout=30)


@pytest.mark.parametrize("codec", CODECS)
def test_ctrl_c_during_a_blocked_send(codec):
    out = run('''
        def interrupt():
            wait_full()
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            ch.send(BIG)
        except KeyboardInterrupt:
            print("interrupted")
        else:
            raise AssertionError("the send finished")
        # part of the frame went out: the gateway says so, never a silent
        # corruption
        assert gw._io.broken and "cut short" in gw._io.broken, gw._io.broken
        try:
            ch.send(1)
        except IOError as exc:
            assert "cut short" in str(exc), exc
        else:
            raise AssertionError("a send after a torn frame went out")
        os.kill(pid, signal.SIGCONT)
        # the worker meets the torn frame's end and exits (it may still close
        # its channel first); the gateway's error names the cause
        assert gw.join(20)
        assert "cut short" in str(gw._error), gw._error
        print("gateway ended:", gw._error)
        group.terminate(2)
    ''', codec)
    assert "interrupted" in out and "gateway ended" in out


@pytest.mark.parametrize("codec", CODECS)
def test_ctrl_c_before_a_frame_starts_keeps_the_stream(codec):
    # Ctrl-C while waiting for another thread's turn: nothing of this frame
    # went out, so the gateway goes on once the worker does
    out = run('''
        t = threading.Thread(target=blocked_sender, daemon=True)
        t.start()
        started.wait()
        wait_full()
        def interrupt():
            os.kill(os.getpid(), signal.SIGINT)
        threading.Timer(0.2, interrupt).start()
        try:
            ch.send(b"second")
        except KeyboardInterrupt:
            print("interrupted")
        assert not gw._io.broken
        os.kill(pid, signal.SIGCONT)
        t.join(20)
        assert not errors, errors
        group.terminate(2)
    ''', codec)
    assert "interrupted" in out


# the pure-Python writer takes the same exit/close paths: its variant runs
# in test_terminate_returns_with_a_blocked_writer (CI time)
@pytest.mark.parametrize("codec", ["rust"])
def test_terminate_from_a_signal_handler_inside_a_blocked_send(codec):
    # the handler runs in the very thread that holds the writer: neither
    # exit() nor the close may wait for it, and a send from the handler is
    # an error, not a deadlock
    out = run('''
        def handler(signum, frame):
            try:
                ch.send(b"from the handler")
            except RuntimeError as exc:
                print("handler send refused:", exc)
            group.terminate(timeout=1)
            print("terminated from the handler")
        signal.signal(signal.SIGUSR1, handler)
        def poke():
            wait_full()
            os.kill(os.getpid(), signal.SIGUSR1)
        threading.Thread(target=poke, daemon=True).start()
        try:
            ch.send(BIG)
        except (OSError, IOError) as exc:
            print("send ended:", exc)
        assert gw._io.broken
    ''', codec)
    assert "handler send refused" in out
    assert "terminated from the handler" in out and "send ended" in out


def test_terminate_with_several_stopped_workers_and_blocked_writers():
    script = textwrap.dedent('''
        import fcntl, os, signal, sys, termios, threading, time
        import weft.execnet as execnet
        group = execnet.Group()
        def full(gw):
            n = bytearray(4)
            fcntl.ioctl(gw._io._wfd, termios.FIONREAD, n)
            return int.from_bytes(n, sys.byteorder) >= 65536
        gws = []
        for _ in range(4):
            gw = group.makegateway("popen")
            ch = gw.remote_exec("channel.send(__import__('os').getpid()); channel.receive()")
            os.kill(ch.receive(10), signal.SIGSTOP)
            threading.Thread(target=lambda ch=ch: ch.send(b"x" * (16 << 20)),
                             daemon=True).start()
            gws.append(gw)
        deadline = time.monotonic() + 20
        while not all(full(gw) for gw in gws):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t0 = time.monotonic()
        group.terminate(timeout=1)
        took = time.monotonic() - t0
        print("terminate of 4 took %.2f s" % took)
        assert took < 4, took
    ''')
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout)


def test_stopped_via_worker_does_not_stall_its_proxy_gateway():
    script = textwrap.dedent('''
        import os, signal, threading, time
        import weft.execnet as execnet
        group = execnet.Group()
        proxy = group.makegateway("popen//id=proxy")
        via = group.makegateway("popen//via=proxy")
        ch = via.remote_exec("channel.send(__import__('os').getpid()); channel.receive()")
        pid = ch.receive(10)
        os.kill(pid, signal.SIGSTOP)
        threading.Thread(target=lambda: ch.send(b"x" * (8 << 20)), daemon=True).start()
        # the proxy keeps serving while its relay to the stopped child is stuck
        for _ in range(5):
            assert proxy.remote_exec("channel.send(7)").receive(10) == 7
        t0 = time.monotonic()
        group.terminate(timeout=1)
        print("terminate took %.2f s" % (time.monotonic() - t0))
        assert time.monotonic() - t0 < 5
        # and the stopped via worker does not linger (its proxy kills it)
        deadline = time.monotonic() + 15
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the via worker is still there"
            time.sleep(0.05)
    ''')
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
