"""eventlet on weft (run under `python -m weft.alias greenlet` by
tests/test_greenlet_users.py): green threads, queues, events, pools,
timeouts and green sockets."""
import warnings
warnings.simplefilter("ignore")  # eventlet's deprecation notice
import greenlet, eventlet
assert "weft" in greenlet.__file__, greenlet.__file__
from eventlet import queue, event
q = queue.Queue()
def producer(n):
    for i in range(n):
        q.put(i)
        eventlet.sleep(0)
    q.put(None)
def consumer():
    out = []
    while (x := q.get()) is not None:
        out.append(x)
    return out
pool = eventlet.GreenPool(10)
p = pool.spawn(producer, 100)
c = pool.spawn(consumer)
assert c.wait() == list(range(100))
e = event.Event()
eventlet.spawn_after(0.01, e.send, "done")
assert e.wait() == "done"
assert sorted(pool.imap(lambda x: x * x, range(20))) == [x * x for x in range(20)]
with eventlet.Timeout(0.05, False):
    eventlet.sleep(1)
    raise AssertionError("timeout did not fire")
# green sockets: a tiny echo server
server = eventlet.listen(("127.0.0.1", 0))
port = server.getsockname()[1]
def echo(sock, addr):
    data = sock.recv(100)
    sock.sendall(data.upper())
    sock.close()
def serve():
    sock, addr = server.accept()
    echo(sock, addr)
eventlet.spawn(serve)
cl = eventlet.connect(("127.0.0.1", port))
cl.sendall(b"hello")
assert cl.recv(100) == b"HELLO"
print("eventlet OK")
