"""Hypothesis-driven randomized switch/throw/kill/GC/reparent graphs across
OS threads, and interpreter shutdown in the middle of them, run in a
subprocess with a timeout so that a crash or a hang is a test failure.  See
gstress_script.py for the model and the invariants.

Seeded per run: WEFT_STRESS_SEED if set, else a random seed drawn here.
Each test prints its seed (also with -q) and a failure's message starts with
it; WEFT_STRESS_SEED=N replays that run."""
import os
import random

import pytest

from gtest_support import HERE, run_script

SEED = int(os.environ.get("WEFT_STRESS_SEED") or random.SystemRandom().randrange(2**32))


def _script():
    with open(os.path.join(HERE, "gstress_script.py")) as f:
        src = f.read()
    # run_script prepends PRELUDE; the script body must run as __main__
    return src


def _run(capsys, seed, examples, shutdown_examples=0):
    with capsys.disabled():
        print(f"\n[gstress] seed {seed} (WEFT_STRESS_SEED={seed} replays it): "
              f"{examples} thread examples, {shutdown_examples} shutdown examples")
    env = {"WEFT_STRESS_SEED": str(seed), "WEFT_STRESS_EXAMPLES": str(examples),
           "WEFT_STRESS_SHUTDOWN_EXAMPLES": str(shutdown_examples)}
    try:
        proc = run_script(_script(), timeout=300, env_extra=env)
    except AssertionError as e:
        raise AssertionError(f"stress run with WEFT_STRESS_SEED={seed} failed:\n{e}") from None
    assert proc.stdout.splitlines()[0] == f"STRESS SEED {seed}", proc.stdout
    assert f"STRESS OK {examples} {shutdown_examples}" in proc.stdout, proc.stdout


def test_randomized_two_thread_graphs_and_shutdown_subprocess(capsys):
    _run(capsys, SEED, examples=150, shutdown_examples=int(os.environ.get("WEFT_STRESS_SHUTDOWN", "20")))


def test_randomized_graphs_repeated_in_one_process_subprocess(capsys):
    # a second, longer run: state left behind by earlier examples (dead
    # threads, killed greenlets) must not break later ones
    _run(capsys, (SEED + 1) % 2**32, examples=400)


@pytest.mark.parametrize("mode", ["return", "sys.exit in a greenlet", "gc then return"])
def test_shutdown_child_detects_a_failure_subprocess(mode):
    """The shutdown check can fail: a child whose op stream asserts something
    false (an unknown op) must be reported, not pass."""
    import sys
    sys.path.insert(0, HERE)
    import gstress_script

    with pytest.raises(AssertionError, match=r"rc=1(.|\n)*raise AssertionError\(op\)(.|\n)*no-such-op"):
        gstress_script.run_shutdown_child([["no-such-op"]], [], [], mode)
