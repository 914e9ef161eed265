"""At interpreter exit the main thread's live tasklets are killed, as
Stackless does: their finally clauses run, whatever they were doing."""
import subprocess
import sys
import textwrap


def run(code):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


def test_blocked_paused_and_runnable_tasklets_are_killed_at_exit():
    out, _ = run('''
        import weft.stackless as stackless
        ch = stackless.channel()

        def waits(name):
            try:
                ch.receive()
            finally:
                print("finally", name, flush=True)

        def loops():
            try:
                while True:
                    stackless.schedule()
            finally:
                print("finally loops", flush=True)

        stackless.tasklet(waits)("blocked")
        stackless.tasklet(loops)()
        stackless.run(100)  # preempted: leaves them alive
        stackless.tasklet(waits)("unstarted")
        print("end of main", flush=True)
    ''')
    lines = out.split("\n")
    assert lines[0] == "end of main"
    assert set(lines[1:]) - {""} == {"finally blocked", "finally loops"}


def test_an_error_while_dying_is_reported_not_raised():
    out, err = run('''
        import weft.stackless as stackless
        ch = stackless.channel()

        def bad():
            try:
                ch.receive()
            finally:
                raise ValueError("from a finally at exit")

        stackless.tasklet(bad)()
        stackless.run()
        print("done")
    ''')
    assert out.strip() == "done"
    assert "from a finally at exit" in err
    assert "killed at interpreter exit" in err


def test_sys_exit_inside_a_tasklet_ends_the_program_cleanly():
    out, _ = run('''
        import sys
        import weft.stackless as stackless

        def quits():
            print("quitting", flush=True)
            sys.exit(0)

        stackless.tasklet(quits)()
        stackless.run()
        print("after run", flush=True)
    ''')
    # SystemExit leaves run() in the main tasklet and ends the program; the
    # exit hook then finds nothing left to kill.
    assert out.split() == ["quitting"]
