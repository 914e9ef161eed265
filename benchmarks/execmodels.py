"""The exec models of a popen worker, side by side:

    python -m weft.alias greenlet -- python benchmarks/execmodels.py [--n N] [MODEL ...]

For each model (default: thread main_thread_only tasklet eventlet gevent;
eventlet and gevent where installed, on weft.greenlet under the alias):
startup: new gateway to the first remote_exec result; exec: a remote_exec
round trip (start a task, get its one item) with no other task, and while
another task of the worker waits in receive() (main_thread_only cannot run
a second task then: not measured); echo: a round trip of a small int on a
running task while another one waits. Medians of N (default 50).
"""
import importlib.util
import statistics
import sys
import time
import warnings

import weft.execnet as execnet

MODELS = ("thread", "main_thread_only", "tasklet", "eventlet", "gevent")


def median_ms(fn, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def exec_one(gw):
    gw.remote_exec("channel.send(1)").receive(10)


def measure(model, n):
    t0 = time.perf_counter()
    gw = execnet.makegateway("popen//execmodel=%s" % model)
    exec_one(gw)
    startup = (time.perf_counter() - t0) * 1e3
    alone = median_ms(lambda: exec_one(gw), n)
    row = "%-17s startup %6.1f ms  exec %5.2f ms" % (model, startup, alone)
    if model != "main_thread_only":
        waiter = gw.remote_exec("channel.receive()")
        busy = median_ms(lambda: exec_one(gw), n)
        echo = gw.remote_exec("for x in channel: channel.send(x)")
        rtt = median_ms(lambda: (echo.send(1), echo.receive(10)), n)
        row += "  exec while one waits %5.2f ms  echo while one waits %5.3f ms" % (busy, rtt)
        echo.close()
        waiter.send(None)
        waiter.waitclose(10)
    gw.exit()
    gw.join(10)
    return row


def main(argv):
    warnings.simplefilter("ignore")
    n = int(argv[argv.index("--n") + 1]) if "--n" in argv else 50
    models = [a for a in argv if a in MODELS] or list(MODELS)
    for model in models:
        if model in ("eventlet", "gevent") and importlib.util.find_spec(model) is None:
            print("%-17s not installed" % model)
            continue
        print(measure(model, n), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
