"""Smoke test: the compiled module imports and reports the packaged version."""
import pathlib
import tomllib

import weft


def test_version_matches_pyproject():
    pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
    expected = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert weft.__version__ == expected


def test_compiled_module_is_loaded():
    from weft import _weft

    assert _weft.__version__ == weft.__version__


def test_greenlet_version_is_the_followed_release_everywhere():
    # weft.greenlet, the `greenlet` alias and the conformance suite name the
    # same greenlet release.
    import os
    import subprocess
    import sys

    import weft.greenlet
    from weft import alias, conformance

    assert weft.greenlet.__version__ == conformance.GREENLET_VERSION
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(alias.ALIASES)] + sys.path))
    out = subprocess.run([sys.executable, "-c", "import greenlet; print(greenlet.__version__)"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == weft.greenlet.__version__
