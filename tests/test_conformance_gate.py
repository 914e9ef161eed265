"""The conformance gate (weft.conformance.report and module_result) on
synthetic runs: what must fail it does, and the closing line counts failing
test ids."""
import pytest

from weft import conformance
from weft._tooling.conformance.execnet_suite import _gate

KNOWN = {"m.T.test_known": "a documented gap"}


def closing(out):
    return out.strip().splitlines()[-1]


def test_clean_run_passes(capsys):
    assert conformance.report((3, 0, 1), [], KNOWN, passed_ids=["m.T.a", "m.T.b", "m.T.c"]) == 0
    assert closing(capsys.readouterr().out) == "3 passed, 0 failed, 1 skipped"


def test_known_failure_passes_and_is_counted(capsys):
    assert conformance.report((2, 1, 0), ["m.T.test_known"], KNOWN) == 0
    out = capsys.readouterr().out
    assert "a documented gap" in out
    assert closing(out) == "2 passed, 1 failed, 0 skipped"


def test_new_failure_fails(capsys):
    assert conformance.report((2, 1, 0), ["m.T.test_new"], KNOWN) == 1
    out = capsys.readouterr().out
    assert "NEW failures (1)" in out and "m.T.test_new" in out


def test_planted_unexpected_success_fails(capsys):
    # Counted as passed by a runner that does not know better: still fatal.
    assert conformance.report((5, 0, 0), [], KNOWN, unexpected_ids=["m.T.test_xfail"]) == 1
    out = capsys.readouterr().out
    assert "UNEXPECTED successes (1" in out and "m.T.test_xfail" in out
    assert closing(out) == "5 passed, 1 failed, 0 skipped"


def test_empty_run_fails(capsys):
    assert conformance.report((0, 0, 0), [], KNOWN) == 1
    out = capsys.readouterr().out
    assert "NO TESTS RAN" in out
    assert closing(out) == "0 passed, 0 failed, 0 skipped"


def test_all_skipped_is_an_empty_run(capsys):
    assert conformance.report((0, 0, 7), [], {}) == 1
    assert "NO TESTS RAN (7 skipped)" in capsys.readouterr().out


def test_known_failure_that_passes_fails_until_it_leaves_the_list(capsys):
    assert conformance.report((3, 0, 0), [], KNOWN, passed_ids=["m.T.test_known", "m.T.x", "m.T.y"]) == 1
    assert "known failures that PASSED (1" in capsys.readouterr().out
    # Taken out of the list: the same run passes.
    assert conformance.report((3, 0, 0), [], {}, passed_ids=["m.T.test_known", "m.T.x", "m.T.y"]) == 0


def test_flaky_failure_is_not_fatal_and_flaky_pass_is_fine(capsys):
    flaky = {"m.T.test_flaky": "timing"}
    assert conformance.report((1, 1, 0), ["m.T.test_flaky"], {}, flaky) == 0
    assert conformance.report((2, 0, 0), [], {}, flaky, passed_ids=["m.T.test_flaky", "m.T.z"]) == 0


def test_failure_count_is_the_number_of_failing_ids(capsys):
    # The runner's own count (here 7: a test failing in call and teardown,
    # counted twice) does not reach the closing line; the distinct ids do.
    ids = ["m.T.a", "m.T.a", "m.T.test_known", "m (crashed)"]
    assert conformance.report((4, 7, 0), ids, KNOWN) == 1
    assert closing(capsys.readouterr().out) == "4 passed, 3 failed, 0 skipped"


UNITTEST_OK = """test_a (m.T.test_a) ... ok
test_b (m.T.test_b) ... ok
2 passed, 0 failed, 0 skipped
"""


def test_module_result_reads_a_clean_child():
    counts, failed, passed, unexpected = conformance.module_result("m", UNITTEST_OK, 0)
    assert counts == (2, 0, 0) and failed == [] and unexpected == []
    assert passed == ["m.T.test_a", "m.T.test_b"]


def test_child_nonzero_exit_without_a_named_failure_fails(capsys):
    counts, failed, passed, unexpected = conformance.module_result("m", UNITTEST_OK, 3)
    assert failed == ["m (exit code 3)"]
    assert conformance.report(counts, failed, {}, passed_ids=passed, unexpected_ids=unexpected) == 1


def test_child_crash_before_its_closing_line_fails(capsys):
    counts, failed, _, _ = conformance.module_result("m", "test_a (m.T.test_a) ... ok\n", -11)
    assert counts == (1, 1, 0) and failed == ["m (crashed)"]


def test_unexpected_success_in_child_output_fails(capsys):
    out = ("test_a (m.T.test_a) ... ok\n"
           "test_x (m.T.test_x) ... unexpected success\n"
           "1 passed, 1 failed, 0 skipped\n")
    counts, failed, passed, unexpected = conformance.module_result("m", out, 1)
    assert unexpected == ["m.T.test_x"] and failed == []
    assert conformance.report(counts, failed, {}, passed_ids=passed, unexpected_ids=unexpected) == 1
    assert closing(capsys.readouterr().out) == "1 passed, 1 failed, 0 skipped"


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>
"""


@pytest.mark.parametrize("rc", [1, 2, 5])
def test_pytest_exit_status_is_never_ignored(tmp_path, capsys, rc):
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT.format(cases='<testcase classname="testing.test_a" name="test_a" file="testing/test_a.py"/>'))
    assert _gate(str(junit), rc, {}, {}) == 1
    assert f"pytest (exit code {rc}" in capsys.readouterr().out


def test_pytest_no_tests_collected_fails(tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT.format(cases=""))
    assert _gate(str(junit), 5, {}, {}) == 1
    out = capsys.readouterr().out
    assert "no tests collected" in out and closing(out) == "0 passed, 1 failed, 0 skipped"


def test_pytest_clean_report_passes(tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT.format(cases='<testcase classname="testing.test_a" name="test_a" file="testing/test_a.py"/>'))
    assert _gate(str(junit), 0, {}, {}) == 0
    assert closing(capsys.readouterr().out) == "1 passed, 0 failed, 0 skipped"


def test_pytest_xpass_is_seen_by_the_plugin_and_fails_the_gate(tmp_path, capsys):
    # A non-strict xfail that passes is a plain pass in the JUnit report: the
    # runners' plugin (-p weft._tooling.conformance.execnet_suite) records it for the gate.
    import os
    import subprocess
    import sys

    from weft._tooling.conformance.execnet_suite import XPASS_ENV, XPASS_PLUGIN_ARGS

    (tmp_path / "test_planted.py").write_text(
        "import pytest\n"
        "@pytest.mark.xfail(reason='planted')\n"
        "def test_xpass():\n    pass\n"
        "@pytest.mark.xfail(reason='real')\n"
        "def test_xfail():\n    assert False\n"
        "def test_ok():\n    pass\n")
    junit, xpass = tmp_path / "junit.xml", tmp_path / "xpassed.txt"
    env = dict(os.environ, **{XPASS_ENV: str(xpass)})
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--junitxml", str(junit), "-o", "junit_family=xunit1",
                           "test_planted.py"] + XPASS_PLUGIN_ARGS,
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # pytest itself is happy
    assert _gate(str(junit), proc.returncode, {}, {}, xpass_file=str(xpass)) == 1
    out = capsys.readouterr().out
    assert "UNEXPECTED successes (1" in out and "test_planted.py::test_xpass" in out
    assert closing(out) == "1 passed, 1 failed, 1 skipped"


def test_xpass_of_a_listed_flaky_xfail_is_not_fatal(capsys):
    flaky = {"t.py::test_timing": "the peer's own non-strict xfail, by timing"}
    assert conformance.report((2, 0, 0), [], {}, flaky, unexpected_ids=["t.py::test_timing"]) == 0
    out = capsys.readouterr().out
    assert "known-flaky xfail tests that passed this time (1" in out
    assert closing(out) == "2 passed, 0 failed, 0 skipped"
    # ... while an unlisted one next to it still fails the run
    assert conformance.report((2, 0, 0), [], {}, flaky,
                              unexpected_ids=["t.py::test_timing", "t.py::test_other"]) == 1
