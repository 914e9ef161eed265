"""The Rust fast path: codec/transport negotiation at boot and its fallbacks."""
import os
import shutil
import subprocess
import sys

import pytest

import weft.execnet as execnet
from weft._bootstrap import core

CODEC = "import weft_boot_core as c; channel.send(c.codec_name())"


def _python_without_weft():
    """Another CPython 3.8+ on this machine that cannot import weft."""
    for name in ("/usr/bin/python3", "python3.12", "python3.13", "python3.10", "python3"):
        path = shutil.which(name)
        if not path or os.path.realpath(path) == os.path.realpath(sys.executable):
            continue
        probe = subprocess.run([path, "-c", "import sys; assert sys.version_info >= (3, 8); import weft"],
                               capture_output=True, env={"PATH": os.environ.get("PATH", "")})
        if probe.returncode != 0 and b"No module named 'weft'" in probe.stderr:
            return path
    return None


def test_local_side_uses_rust():
    assert core.codec_name() == "rust"
    assert core.rust_version() is not None


def test_popen_worker_switches_to_rust(gw):
    assert gw.remote_exec(CODEC).receive() == "rust"


def test_worker_without_weft_stays_pure_python(group):
    python = _python_without_weft()
    if python is None:
        pytest.skip("no other interpreter without weft on this machine")
    gw = group.makegateway("popen//python=%s" % python)
    assert gw.remote_exec(CODEC).receive() == "python"
    # and the two codecs still understand each other, both ways
    ch = gw.remote_exec("""
        while 1:
            x = channel.receive()
            if x is None: break
            channel.send(x)
    """)
    values = [{"a": 1, "b": [1, 2, (3, 4.5)], "c": "héllo"}, b"x" * 300000, 2 ** 100,
              frozenset({1, 2}), {1: None, (1, "a"): {True, False}}, -7, 1.5j]
    for v in values:
        ch.send(v)
        assert ch.receive() == v
    ch.send(None)
    ch.waitclose(10)


def test_worker_with_other_weft_version_stays_pure_python(group, monkeypatch):
    monkeypatch.setattr(core, "rust_version", lambda: "0.0.0-not-this-one")
    gw = group.makegateway("popen")
    assert gw.remote_exec(CODEC).receive() == "python"
    ch = gw.remote_exec("channel.send(channel.receive() * 2)")
    ch.send(21)
    assert ch.receive() == 42


def test_env_forces_pure_python_on_both_ends(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import weft.execnet as e\n"
        "from weft._bootstrap import core\n"
        "gw = e.makegateway('popen')\n"
        "r = gw.remote_exec(%r).receive()\n"
        "ch = gw.remote_exec('channel.send(channel.receive())')\n"
        "ch.send({'k': [1, 2, b'x' * 100000]})\n"
        "assert ch.receive() == {'k': [1, 2, b'x' * 100000]}\n"
        "print(core.codec_name(), r)\n"
        "gw.exit()\n" % CODEC)
    env = dict(os.environ, WEFT_PURE_PYTHON_CODEC="1")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["python", "python"]
