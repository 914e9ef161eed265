"""greenlet's other main users keep working on weft: eventlet and
SQLAlchemy's asyncio layer, each a smoke script (tests/greenlet_users/) run
in a fresh interpreter under `python -m weft.alias greenlet`. gevent has its
own runner: `python -m weft.conformance gevent`."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "greenlet_users"


def run_aliased(script):
    proc = subprocess.run([sys.executable, "-m", "weft.alias", "greenlet", "--", sys.executable, str(HERE / script)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def needs(*mods):
    missing = [m for m in mods if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (the [test] extra)")


@needs("eventlet")
def test_eventlet_smoke():
    assert "eventlet OK" in run_aliased("eventlet_smoke.py")


@needs("sqlalchemy", "aiosqlite")
def test_sqlalchemy_asyncio_smoke():
    assert "sqlalchemy OK" in run_aliased("sqlalchemy_smoke.py")
