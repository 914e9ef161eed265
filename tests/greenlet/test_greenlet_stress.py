"""Hypothesis-driven randomized switch/throw/kill graphs across two OS
threads, run in a subprocess with a timeout so that a crash or a hang is a
test failure.  See gstress_script.py for the model and the invariants."""
import os

from gtest_support import HERE, run_script


def _script():
    with open(os.path.join(HERE, "gstress_script.py")) as f:
        src = f.read()
    # run_script prepends PRELUDE; the script body must run as __main__
    return src


def test_randomized_two_thread_switch_throw_kill_graphs_subprocess():
    proc = run_script(_script(), timeout=300, env_extra={"WEFT_STRESS_EXAMPLES": "150"})
    assert "STRESS OK" in proc.stdout


def test_randomized_graphs_repeated_in_one_process_subprocess():
    # a second, longer run: state left behind by earlier examples (dead
    # threads, killed greenlets) must not break later ones
    proc = run_script(_script(), timeout=300, env_extra={"WEFT_STRESS_EXAMPLES": "400"})
    assert "STRESS OK" in proc.stdout
