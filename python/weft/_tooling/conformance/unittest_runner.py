"""Runs a unittest suite with a list of documented skips and prints the
closing line CI reads: `N passed, N failed, N skipped`.

    python -m weft._tooling.conformance.unittest_runner PACKAGE SKIPS_JSON [PATTERN]

SKIPS_JSON maps a test id (or a prefix of one ending in '.') to the reason.
"""
import json
import sys
import unittest


def _apply_skips(suite, skips):
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            _apply_skips(test, skips)
            continue
        tid = test.id()
        reason = skips.get(tid) or next((r for k, r in skips.items() if k.endswith(".") and tid.startswith(k)), None)
        if reason:
            setattr(test, test._testMethodName, unittest.skip(reason)(getattr(test, test._testMethodName)))


def main(argv):
    package, skips_path = argv[0], argv[1]
    pattern = argv[2] if len(argv) > 2 else None
    with open(skips_path) as f:
        skips = json.load(f)
    loader = unittest.TestLoader()
    if pattern:
        # As unittest's own -k: a plain string matches as a substring.
        loader.testNamePatterns = [pattern if "*" in pattern else f"*{pattern}*"]
    suite = loader.loadTestsFromName(package)
    _apply_skips(suite, skips)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    # A class skipped in setUpClass counts as skipped without being run
    # (unittest on 3.12+ reports "Ran 0 tests (skipped=1)").
    passed = max(result.testsRun - failed - skipped, 0)
    print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
