"""A tasklet whose gateway send finds the pipe full blocks only itself: it
parks until the descriptor is writable (weft.stackless.io), the other
tasklets of its thread run, a second sender parks for the writer's turn
instead of failing, and a thread whose tasklets all wait polls the
descriptor itself. The worker is stopped with SIGSTOP so that its pipe
fills; each case runs in a subprocess with a timeout."""
import os
import subprocess
import sys
import textwrap

PRELUDE = textwrap.dedent('''
    import fcntl, os, signal, sys, termios, threading, time
    import weft.execnet as execnet
    import weft.stackless as stackless

    gw = execnet.makegateway("popen")
    ch = gw.remote_exec(
        "import os\\n"
        "channel.send(os.getpid())\\n"
        "n = 0\\n"
        "while True:\\n"
        "    x = channel.receive()\\n"
        "    if x is None: break\\n"
        "    n += len(x)\\n"
        "channel.send(n)\\n")
    pid = ch.receive(10)
    BIG = b"x" * (8 << 20)

    def pipe_is_full():
        # FIONREAD on the write end of a pipe: bytes the worker has not read
        n = bytearray(4)
        fcntl.ioctl(gw._io._wfd, termios.FIONREAD, n)
        return int.from_bytes(n, sys.byteorder) >= 65536
''')


def run(body, timeout=60):
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_other_tasklets_run_while_one_sends_to_a_full_pipe():
    out = run('''
        os.kill(pid, signal.SIGSTOP)
        state = {"sent": False, "ticks_while_blocked": 0}

        def sender():
            ch.send(BIG)
            state["sent"] = True

        def ticker():
            while not pipe_is_full():
                stackless.schedule()
            for _ in range(200):
                assert not state["sent"]
                state["ticks_while_blocked"] += 1
                stackless.schedule()
            os.kill(pid, signal.SIGCONT)
            while not state["sent"]:
                stackless.schedule()

        stackless.tasklet(sender)()
        stackless.tasklet(ticker)()
        stackless.run()
        ch.send(None)
        print(state["ticks_while_blocked"], ch.receive(30))
        gw.exit()
    ''')
    assert out.split() == ["200", str(8 << 20)]


def test_a_second_sender_parks_for_the_turn():
    # Both tasklets send on the one gateway: the second finds the first
    # holding the writer's turn (parked on the full pipe) and waits for it.
    out = run('''
        os.kill(pid, signal.SIGSTOP)
        done = []

        def sender(k):
            ch.send(BIG)
            done.append(k)

        def releaser():
            while not pipe_is_full():
                stackless.schedule()
            for _ in range(50):
                stackless.schedule()
            assert done == []
            os.kill(pid, signal.SIGCONT)

        for k in range(2):
            stackless.tasklet(sender)(k)
        stackless.tasklet(releaser)()
        stackless.run()
        ch.send(None)
        print(sorted(done), ch.receive(30))
        gw.exit()
    ''')
    assert out.split() == ["[0,", "1]", str(2 * (8 << 20))]


def test_an_idle_thread_polls_the_descriptor_itself():
    # Every tasklet waits (one on the full pipe, one on a local channel):
    # run() idles in poll; a plain thread resumes the worker once the pipe
    # is full, and the sender's hand-off then wakes the other tasklet.
    out = run('''
        os.kill(pid, signal.SIGSTOP)
        local = stackless.channel()
        got = []

        def sender():
            ch.send(BIG)
            local.send("sent")

        def waiter():
            got.append(local.receive())

        def resume_when_full():
            deadline = time.monotonic() + 20
            while not pipe_is_full():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            os.kill(pid, signal.SIGCONT)

        th = threading.Thread(target=resume_when_full)
        th.start()
        stackless.tasklet(sender)()
        stackless.tasklet(waiter)()
        stackless.run(threadblock=True)
        th.join()
        ch.send(None)
        print(got, ch.receive(30))
        gw.exit()
    ''')
    assert out.split() == ["['sent']", str(8 << 20)]


def test_killing_a_tasklet_parked_mid_frame_breaks_the_stream_clearly():
    out = run('''
        os.kill(pid, signal.SIGSTOP)
        state = {}

        def sender():
            try:
                ch.send(BIG)
            except TaskletExit:
                state["killed"] = True
                raise

        t = stackless.tasklet(sender)()

        def killer():
            while not pipe_is_full():
                stackless.schedule()
            t.kill()

        stackless.tasklet(killer)()
        stackless.run()
        try:
            ch.send(b"more")
        except OSError as e:
            print("refused", "cut short" in str(e))
        print(state)
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
    ''')
    assert "refused True" in out
    assert "{'killed': True}" in out
