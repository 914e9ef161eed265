"""ssh= gateways against a throwaway sshd on 127.0.0.1 (skipped without openssh-server)."""
import os
import subprocess
import sys
import textwrap

import pytest

import weft.execnet as execnet


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    from weft._tooling.sshd import start_sshd

    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except (RuntimeError, OSError) as exc:
        pytest.skip("no sshd: %s" % exc)
    yield server
    server.stop()


def test_ssh_roundtrip(sshd, group):
    gw = group.makegateway("ssh=%s" % sshd.spec_ssh)
    assert gw.remoteaddress == sshd.spec_ssh
    ch = gw.remote_exec("channel.send(channel.receive() * 2)")
    ch.send(21)
    assert ch.receive(20) == 42
    assert gw._rinfo().pid != os.getpid()


def test_ssh_config_key(sshd, group):
    gw = group.makegateway("ssh=%s//ssh_config=%s" % (sshd.host, sshd.config))
    assert gw.remote_exec("channel.send(1)").receive(20) == 1


def test_ssh_host_not_found(sshd, group):
    with pytest.raises(execnet.HostNotFound):
        group.makegateway("ssh=-F %s no-such-host.invalid" % sshd.config)


def test_ssh_worker_output_reaches_local_stderr(sshd, tmp_path):
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent("""
        import sys, weft.execnet as execnet
        gw = execnet.makegateway("ssh=" + sys.argv[1])
        ch = gw.remote_exec("print('printed-remotely'); channel.send(1)")
        assert ch.receive(20) == 1
        execnet.default_group.terminate(5)
    """))
    proc = subprocess.run([sys.executable, str(script), sshd.spec_ssh], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "printed-remotely" in proc.stderr  # ssh: remote stdout goes to stderr


def test_ssh_worker_killed(sshd, group):
    gw = group.makegateway("ssh=%s" % sshd.spec_ssh)
    ch = gw.remote_exec("import os, signal; channel.send(1); os.kill(os.getpid(), signal.SIGKILL)")
    assert ch.receive(20) == 1
    with pytest.raises(EOFError):
        ch.receive(20)


def test_ssh_via(sshd, group):
    group.makegateway("ssh=%s//id=remote" % sshd.spec_ssh)
    gw = group.makegateway("popen//via=remote")
    assert gw.remote_exec("channel.send(5)").receive(20) == 5


def test_ssh_tasklet_worker_and_tasklet_group(sshd, tmp_path):
    """The tasklet exec model over ssh (the stdio transport): the worker's
    receiver is a tasklet of its one thread, and a local tasklet group's ssh
    gateway reads in a tasklet of the thread that made it."""
    script = tmp_path / "ssh_tasklets.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        import weft.execnet as execnet
        from weft import stackless

        group = execnet.Group(execmodel="tasklet")
        gw = group.makegateway("ssh=%s//python=%s//execmodel=tasklet" % (sys.argv[1], sys.argv[2]))
        ch = gw.remote_exec('''
            import os
            channel.send(len(os.listdir("/proc/self/task")))
            for item in channel:
                channel.send(item)
        ''')
        assert ch.receive(20) == 1
        big = os.urandom(3 << 20)
        results = []
        def echo(k):
            ch2 = gw.remote_exec("channel.send(channel.receive())")
            ch2.send((k, big))
            results.append(ch2.receive(20) == (k, big))
        for k in range(3):
            stackless.tasklet(echo)(k)
        ch.send("x")
        stackless.run()
        assert ch.receive(20) == "x"
        assert results == [True, True, True], results
        ch.close()
        group.terminate(10)
        print("ssh tasklets OK")
    """))
    # The worker imports weft (the model needs it): under a sanitizer run
    # (scripts/test-asan.sh) its interpreter needs the same preloaded
    # runtime, which ssh does not pass on by itself.
    keep = ["%s=%s" % (k, os.environ[k]) for k in ("LD_PRELOAD", "ASAN_OPTIONS", "PYTHONMALLOC")
            if k in os.environ]
    python = " ".join(["env"] + keep + [sys.executable]) if keep else sys.executable
    proc = subprocess.run([sys.executable, str(script), sshd.spec_ssh, python], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ssh tasklets OK" in proc.stdout
