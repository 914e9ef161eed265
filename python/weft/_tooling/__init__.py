"""Test and benchmark tooling, not part of weft's runtime API.

Shipped in the package because the commands that use it run from the installed
weft: ``python -m weft`` (the showcase, bench/), ``python -m weft.conformance``
(conformance/), benchmarks/*.py, tests/ and scripts/.

    bench/coroutines.py   switch, create, memory, million: weft.greenlet beside greenlet
    bench/tasklets.py     weft.stackless beside a greenlet emulation, asyncio, threads
    bench/gateway.py      weft.execnet beside execnet over popen
    conformance/          the peers' own suites run against weft (execnet_suite,
                          xdist_suite, gevent_suite; unittest_runner runs
                          greenlet's unittest modules one child at a time)
    sshd.py               a throwaway OpenSSH server on 127.0.0.1 for ssh= gateways
"""
