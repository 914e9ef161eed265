"""weft: microthreads, channels and cross-interpreter channels for CPython."""
try:
    from weft._weft import __version__
except ImportError as e:  # the compiled module is missing or for another CPython
    if "weft was built for" in str(e):
        raise  # weft's own check at import already says what to do
    import pathlib as _pathlib
    import sys as _sys
    import sysconfig as _sysconfig

    _here = _pathlib.Path(__file__).parent
    _found = sorted(p.name for p in _here.glob("_weft*.so"))
    _want = "_weft" + (_sysconfig.get_config_var("EXT_SUFFIX") or ".so")
    if _found and _want not in _found:
        raise ImportError(
            f"weft's compiled module was built for another CPython, not this one (CPython "
            f"{_sys.version_info.major}.{_sys.version_info.minor}, which loads {_want}); "
            f"found {', '.join(_found)} in {_here}: install the weft wheel made for this "
            "CPython, or build weft from source with it (pip install .)"
        ) from e
    raise ImportError(
        f"weft's compiled module weft._weft could not be loaded ({e}); it must be built for "
        f"CPython {_sys.version_info.major}.{_sys.version_info.minor} on this platform: "
        "install the matching weft wheel, or build from source (pip install .)"
    ) from e

__all__ = ["__version__"]
