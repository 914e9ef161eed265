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
