"""Authenticated sessions (socket gateways; docs/gateways.md, docs/wire.md)."""

import os

from .transport import PyWriter, SocketIO, Transport, WaitingReader, read_exact

# After the handshake every byte in either direction travels in records:
#   length (4 bytes, big-endian, 1..RECORD_MAX) + data + tag (32 bytes)
#   tag = HMAC-SHA256(direction key, sequence (8 bytes, big-endian) + length + data)
# The keys come from the secret and both nonces (session_keys), the sequence
# counts the records of that direction from 0.  A record that fails its tag
# (forged, altered, replayed, reordered, from another session) ends the
# connection before any of its bytes is used.

RECORD_MAX = 1 << 20
RECORD_TAG = 32


class SessionError(OSError):
    """A record of an authenticated session failed its check."""


def session_keys(secret, nonce_s, nonce_c):
    """``(client->server key, server->client key)`` of one session."""
    import hmac
    base = hmac.digest(secret, b"weft-session" + nonce_s + nonce_c, "sha256")
    return (hmac.digest(base, b"client->server", "sha256"),
            hmac.digest(base, b"server->client", "sha256"))


class RecordSealer:
    """Turns bytes into records for one direction (``seal``)."""

    def __init__(self, key, seq=0):
        import hmac
        self._digest = hmac.digest
        self._key = key
        self.seq = seq

    def seal(self, data):
        """``(records, undo)``: ``undo()`` takes the sequence numbers back."""
        digest, key = self._digest, self._key
        view = memoryview(data)
        start = self.seq
        out = []
        for i in range(0, len(view), RECORD_MAX):
            chunk = view[i:i + RECORD_MAX]
            head = self.seq.to_bytes(8, "big") + len(chunk).to_bytes(4, "big")
            out.append(head[8:])
            out.append(chunk)
            out.append(digest(key, head + chunk, "sha256"))
            self.seq += 1

        def undo():
            self.seq = start
        return b"".join(out), undo


class RecordOpener:
    """Checks and opens the records of one direction, read with
    ``read_exact(n)`` (exactly n bytes or EOFError)."""

    def __init__(self, key, read_exact, seq=0):
        import hmac
        self._digest = hmac.digest
        self._compare = hmac.compare_digest
        self._key = key
        self.read_exact = read_exact
        self.seq = seq

    def next_record(self):
        head = self.read_exact(4)
        length = int.from_bytes(head, "big")
        if not 0 < length <= RECORD_MAX:
            raise SessionError("authenticated session: record %d announces %d bytes "
                               "(1..%d allowed); the connection is not from our peer "
                               "or was tampered with" % (self.seq, length, RECORD_MAX))
        data = self.read_exact(length)
        tag = self.read_exact(RECORD_TAG)
        want = self._digest(self._key, self.seq.to_bytes(8, "big") + head + data, "sha256")
        if not self._compare(tag, want):
            raise SessionError("authenticated session: record %d failed its check "
                               "(forged, altered, replayed or out of order); "
                               "nothing of it was used" % self.seq)
        self.seq += 1
        return data


class SessionSocketIO(Transport):
    """Byte transport over a socket whose every byte is in authenticated
    records (pure Python on both ends, whatever the codec)."""

    def __init__(self, sock, key_in, key_out, seq_in=0, seq_out=0, green=None):
        self.sock = sock
        if green is not None:  # a green exec model: reads and writes wait in its hub
            self.green = green
            self._rfile = WaitingReader(os.dup(sock.fileno()), green.wait_readable)
        else:
            self._rfile = sock.makefile("rb", 65536)
        self._opener = RecordOpener(key_in, lambda n: read_exact(self._rfile, n), seq_in)
        self._sealer = RecordSealer(key_out, seq_out)
        self._writer = PyWriter(sock.fileno(), sock, self._sealer.seal, green=green)
        self._inbuf = bytearray()

    def read(self, n):
        buf = self._inbuf
        while len(buf) < n:
            buf += self._opener.next_record()
        data = bytes(buf[:n])
        del buf[:n]
        return data

    close_read = SocketIO.close_read
    close_write = SocketIO.close_write

