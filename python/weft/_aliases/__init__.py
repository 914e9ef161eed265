"""Alias packages: each subfolder is importable under a peer's name (greenlet,
execnet, ...) and re-exports weft's face of it. `python -m weft.alias NAME --
COMMAND` puts one of them first on the import path; see weft/alias.py."""
