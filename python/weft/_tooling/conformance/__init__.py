"""Runners of the peers' own test suites against weft (``python -m weft.conformance``)."""
