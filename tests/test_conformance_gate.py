"""The conformance runners' shared gate (weft.conformance.report) and the
JUnit-to-node-id mapping of the execnet/xdist runners."""
import xml.etree.ElementTree as ET

from weft._conformance_execnet import _node_id
from weft.conformance import report


def test_known_and_flaky_failures_pass_the_gate(capsys):
    rc = report((3, 2, 0), ["a", "f"], {"a": "why a", "b": "why b"}, {"f": "timing"}, ["b", "c"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "a: why a" in out and "f: timing" in out
    assert "passed this time" in out and "  b\n" in out
    assert "NEW" not in out
    assert out.splitlines()[-1] == "3 passed, 2 failed, 0 skipped"


def test_a_new_failure_fails_the_gate(capsys):
    rc = report((3, 2, 0), ["a", "n"], {"a": "why a"})
    out = capsys.readouterr().out
    assert rc == 1
    assert "NEW failures (1):\n  n\n" in out
    assert out.splitlines()[-1] == "3 passed, 2 failed, 0 skipped"


def test_node_id_from_junit():
    case = ET.fromstring('<testcase classname="testing.test_gateway.TestTracing" '
                         'name="test_x[thread-popen]" file="testing/test_gateway.py"/>')
    assert _node_id(case) == "testing/test_gateway.py::TestTracing::test_x[thread-popen]"
    case = ET.fromstring('<testcase classname="testing.test_basics" name="test_y" '
                         'file="testing/test_basics.py"/>')
    assert _node_id(case) == "testing/test_basics.py::test_y"
    case = ET.fromstring('<testcase classname="" name="testing.test_broken"/>')
    assert _node_id(case) == "::testing.test_broken"
