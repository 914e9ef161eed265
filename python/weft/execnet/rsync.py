"""RSync: copy a directory tree to one or more gateways (execnet's API).

Only files that are missing or differ (size or mtime) on a target are sent.
Relative symlinks are kept; absolute ones pointing into the source tree are
rewritten to point into the target; others are kept as they are.
"""

import os
import stat

from . import _rsync_remote

__all__ = ["RSync"]


class RSync:
    """Send the directory ``sourcedir`` to targets added with ``add_target``."""

    def __init__(self, sourcedir, callback=None, verbose=True):
        self._sourcedir = str(sourcedir)
        self._verbose = verbose
        self._callback = callback
        self._targets = []  # (gateway, destdir, options, finishedcallback)

    def filter(self, path):
        """Return False to leave ``path`` (absolute) out; override in subclasses."""
        return True

    def add_target(self, gateway, destdir, finishedcallback=None, **options):
        """Add a target; ``delete=True`` removes files not in the source."""
        for name in options:
            if name != "delete":
                raise TypeError("unknown RSync option %r" % (name,))
        self._targets.append((gateway, str(destdir), options, finishedcallback))

    def _report_send_file(self, gateway, modified_rel_path):
        if self._verbose:
            print("%s:%s <= %s" % (gateway.spec, modified_rel_path, modified_rel_path))

    def _listing(self, destdir):
        source = self._sourcedir
        entries = []
        total = 0

        def link_target(path):
            target = os.readlink(path)
            if os.path.isabs(target):
                rel = os.path.relpath(target, source)
                if not rel.startswith(os.pardir) and rel != os.curdir:
                    return os.path.join(destdir, rel)
            return target

        def walk(path, rel):
            nonlocal total
            try:
                names = sorted(os.listdir(path))
            except OSError:
                return
            for name in names:
                full = os.path.join(path, name)
                if not self.filter(full):
                    continue
                relname = os.path.join(rel, name) if rel else name
                try:
                    st = os.lstat(full)
                except OSError:
                    continue  # vanished
                if stat.S_ISLNK(st.st_mode):
                    entries.append(("l", relname, link_target(full)))
                elif stat.S_ISDIR(st.st_mode):
                    entries.append(("d", relname, stat.S_IMODE(st.st_mode)))
                    walk(full, relname)
                elif stat.S_ISREG(st.st_mode):
                    entries.append(("f", relname, st.st_size, int(st.st_mtime),
                                    stat.S_IMODE(st.st_mode)))
                    total += st.st_size

        walk(source, "")
        return entries, total

    def send(self, raises=True):
        """Synchronise every target; targets are used up by a send."""
        if not self._targets:
            if not raises:
                return None
            raise IOError("no targets available, maybe you are trying call send() twice?")
        targets, self._targets = self._targets, []
        for gateway, destdir, options, finishedcallback in targets:
            entries, total = self._listing(destdir)
            channel = gateway.remote_exec(_rsync_remote)
            channel.send((destdir, bool(options.get("delete"))))
            channel.send(entries)
            if self._callback:
                self._callback("list", total, channel)
            while True:
                msg = channel.receive()
                if msg[0] == "done":
                    break
                rel = msg[1]
                try:
                    with open(os.path.join(self._sourcedir, rel), "rb") as f:
                        data = f.read()
                except OSError:
                    data = None
                channel.send(data)
                if data is not None:
                    self._report_send_file(gateway, rel)
                    if self._callback:
                        self._callback("ack", len(data), channel)
            channel.waitclose()
            if finishedcallback:
                finishedcallback()
        return None
