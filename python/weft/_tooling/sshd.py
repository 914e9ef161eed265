"""A throwaway OpenSSH server on 127.0.0.1 for testing ssh= gateways.

``start_sshd(workdir)`` makes a host key and a user key in ``workdir``, starts
``sshd -D`` on a free high port of 127.0.0.1 accepting only that user key for
the current user, and returns an ``SshServer`` with ``config`` (an ssh_config
file), ``host`` (the alias in it) and ``stop()``.  Needs openssh-server
(``sshd``) and ``ssh-keygen``; raises ``RuntimeError`` saying what is missing.
"""

import os
import shutil
import socket
import subprocess
import time

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
HOST_ALIAS = "weft-test-sshd"


class SshServer:
    def __init__(self, proc, config, host, port):
        self.proc = proc
        self.config = config
        self.host = host
        self.port = port

    @property
    def spec_ssh(self):
        """The value for ``ssh=`` that reaches this server."""
        return "-F %s %s" % (self.config, self.host)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(workdir):
    sshd = next((p for p in SSHD_CANDIDATES if os.path.exists(p)), shutil.which("sshd"))
    keygen = shutil.which("ssh-keygen")
    if not sshd or not keygen or not shutil.which("ssh"):
        raise RuntimeError("sshd, ssh-keygen and ssh are needed (install openssh-server)")
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    hostkey = os.path.join(workdir, "host_ed25519")
    userkey = os.path.join(workdir, "user_ed25519")
    for key in (hostkey, userkey):
        if not os.path.exists(key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    authorized = os.path.join(workdir, "authorized_keys")
    shutil.copy(userkey + ".pub", authorized)
    os.chmod(authorized, 0o600)
    os.makedirs("/run/sshd", exist_ok=True) if os.geteuid() == 0 else None
    port = _free_port()
    sshd_config = os.path.join(workdir, "sshd_config")
    with open(sshd_config, "w") as f:
        f.write("\n".join([
            "Port %d" % port,
            "ListenAddress 127.0.0.1",
            "HostKey %s" % hostkey,
            "AuthorizedKeysFile %s" % authorized,
            "PidFile %s" % os.path.join(workdir, "sshd.pid"),
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "AcceptEnv LANG LC_*",
            "",
        ]))
    ssh_config = os.path.join(workdir, "ssh_config")
    with open(ssh_config, "w") as f:
        f.write("\n".join([
            "Host %s" % HOST_ALIAS,
            "  HostName 127.0.0.1",
            "  Port %d" % port,
            "  User %s" % __import__("getpass").getuser(),
            "  IdentityFile %s" % userkey,
            "  IdentitiesOnly yes",
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  LogLevel ERROR",
            "",
        ]))
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", sshd_config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("sshd exited: %s" % proc.stderr.read().decode(errors="replace"))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("sshd did not start listening on port %d" % port)
    return SshServer(proc, ssh_config, HOST_ALIAS, port)
