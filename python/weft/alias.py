"""Run a command with a peer's package name answered by weft.

    python -m weft.alias greenlet -- pytest tests/
    python -m weft.alias greenlet execnet -- python my_app.py

Makes a temporary folder holding one alias package per name (links to
weft/_aliases/NAME), puts it first on PYTHONPATH, and runs the command.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ALIASES = Path(__file__).with_name("_aliases")


def available() -> list[str]:
    return sorted(p.name for p in ALIASES.iterdir() if (p / "__init__.py").exists())


def make_alias_dir(names: list[str], into: Path) -> Path:
    """Links each alias package into `into`; returns `into`."""
    for name in names:
        src = ALIASES / name
        if not (src / "__init__.py").exists():
            raise SystemExit(f"weft.alias: no alias for {name!r}; available: {', '.join(available())}")
        (into / name).symlink_to(src, target_is_directory=True)
    return into


def env_with_aliases(alias_dir: Path, env: dict | None = None) -> dict:
    env = dict(os.environ if env is None else env)
    # The alias folder first, then whatever makes weft itself importable here.
    weft_root = str(Path(__file__).resolve().parent.parent)
    parts = [str(alias_dir), weft_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv.index("--") == 0 or argv.index("--") == len(argv) - 1:
        print(f"usage: python -m weft.alias NAME [NAME ...] -- COMMAND [ARGS ...]\navailable: {', '.join(available())}", file=sys.stderr)
        return 2
    cut = argv.index("--")
    names, command = argv[:cut], argv[cut + 1:]
    with tempfile.TemporaryDirectory(prefix="weft-alias-") as tmp:
        env = env_with_aliases(make_alias_dir(names, Path(tmp)))
        return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
