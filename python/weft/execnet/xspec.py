"""Gateway specifications: ``key=value//key2//env:NAME=value`` strings."""

__all__ = ["XSpec"]


class XSpec:
    """A parsed gateway spec.

    Every ``key=value`` part becomes an attribute (a bare ``key`` becomes
    ``True``), ``env:NAME=value`` parts go into the ``env`` dict, and any
    attribute not given reads as ``None``.  Equality, hash and ``str`` use the
    raw string.  The first part may be ``popen``, ``ssh=HOST`` or
    ``socket=HOST:PORT``.
    """

    # attributes that exist as None unless given (documentation only:
    # __getattr__ answers None for any unknown plain name)
    popen = ssh = socket = python = chdir = nice = dont_write_bytecode = None
    execmodel = id = via = installvia = ssh_config = secret = secret_file = None
    insecure = vagrant_ssh = None

    def __init__(self, string):
        self._spec = string
        self.env = {}
        for keyvalue in string.split("//"):
            key, sep, value = keyvalue.partition("=")
            if not sep:
                value = True
            if key.startswith("env:"):
                self.env[key[4:]] = value
            elif key.startswith("_"):
                raise AttributeError("%r not a valid XSpec key" % key)
            else:
                if key in self.__dict__:
                    raise ValueError("duplicate key %r in spec %r" % (key, string))
                setattr(self, key, value)

    def __getattr__(self, name):
        if name.startswith("_") or name[:1] == "_":
            raise AttributeError(name)
        return None

    def __repr__(self):
        return "<XSpec %r>" % (self._spec,)

    def __str__(self):
        return self._spec

    def __hash__(self):
        return hash(self._spec)

    def __eq__(self, other):
        return self._spec == getattr(other, "_spec", None)

    def __ne__(self, other):
        return not self == other

    def _samefilesystem(self):
        return self.popen is not None and self.chdir is None
