"""Remote half of weft.execnet.RSync; its source is sent with remote_exec.

Protocol on the channel (local -> remote unless noted):
  (destdir, delete)                 options
  [entry, ...]                      the listing, entries in walk order:
        ("d", relpath, mode) | ("f", relpath, size, mtime, mode) | ("l", relpath, target)
  remote -> local ("req", relpath)  for each file that is missing or differs
  local -> remote bytes | None      its content (None: it vanished meanwhile)
  remote -> local ("done",)         after everything is written
Symlink targets arrive already rewritten by the sender.
"""


def serve_rsync(channel):
    import os
    import shutil
    import stat

    destdir, delete = channel.receive()
    listing = channel.receive()
    os.makedirs(destdir, exist_ok=True)
    wanted = set()
    dirmodes = []

    def remove(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)

    for entry in listing:
        kind, rel = entry[0], entry[1]
        path = os.path.join(destdir, rel) if rel else destdir
        wanted.add(rel)
        if kind == "d":
            if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
                remove(path)
            os.makedirs(path, exist_ok=True)
            os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | 0o700)
            dirmodes.append((path, entry[2] | 0o700))
        elif kind == "l":
            if os.path.lexists(path):
                remove(path)
            os.symlink(entry[2], path)
        else:
            size, mtime, mode = entry[2], entry[3], entry[4]
            try:
                st = os.lstat(path)
            except OSError:
                st = None
            if (st is not None and stat.S_ISREG(st.st_mode) and st.st_size == size
                    and int(st.st_mtime) == int(mtime)):
                if stat.S_IMODE(st.st_mode) != mode:
                    os.chmod(path, mode)
                continue
            channel.send(("req", rel))
            data = channel.receive()
            if data is None:
                wanted.discard(rel)
                continue
            if st is not None:
                remove(path)
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, mode)
            os.utime(path, (mtime, mtime))
    if delete:
        for root, dirs, files in os.walk(destdir, topdown=False):
            for name in files + dirs:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, destdir)
                if rel not in wanted:
                    remove(path)
    for path, mode in reversed(dirmodes):
        os.chmod(path, mode)
    channel.send(("done",))


if __name__ == "__channelexec__":
    serve_rsync(channel)  # noqa: F821
