"""Run every workload (switch, create, memory, million) for every peer.

    python benchmarks/run.py [--quick] [--json out.json] [WORKLOAD ...]
"""
from _common import main

if __name__ == "__main__":
    main()
