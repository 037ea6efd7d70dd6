"""A throwaway PostgreSQL server (Debian's postgresql-15 binaries) for the call-record tests.

``initdb`` into a fresh directory, trust authentication on one loopback address and port, a
Unix socket in the same directory; started and stopped with ``pg_ctl``.  PostgreSQL refuses to
run as root: as root the server runs as the ``postgres`` user Debian's package creates (through
``runuser``), and its directory lives in ``/tmp`` (pytest's own tmp dirs are 0700 root).
A missing binary fails the test (``FileNotFoundError``), it never skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PgServer", "bindir"]


def bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``pg_ctl``.

    Raises:
        FileNotFoundError: PostgreSQL is not installed (scripts/bootstrap installs it).
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise FileNotFoundError("pg_ctl: no /usr/lib/postgresql/*/bin/pg_ctl (apt-get install postgresql)")
    return Path(found[-1]).parent


class PgServer:
    """One PostgreSQL server on ``host:port``; superuser ``edge``, database ``postgres``.

    Args:
        host: the loopback address it listens on.
        port: its TCP port.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.bin = bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="edge-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    @property
    def dsn(self) -> str:
        """libpq connection string of the server."""
        return f"host={self.host} port={self.port} user=edge dbname=postgres"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr}{result.stdout}\n{log}")
        return result

    def init(self) -> "PgServer":
        """``initdb`` the cluster and write its settings."""
        self._run("initdb", "-D", str(self.data), "-U", "edge", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"listen_addresses = '{self.host}'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.dir}'\nfsync = off\nfull_page_writes = off\n"
                       "shared_buffers = 16MB\nmax_connections = 20\n")
        return self

    def start(self) -> None:
        """Start the server and wait until it accepts connections (``pg_ctl -w``)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut, as in an outage)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        """Whether ``pg_ctl status`` finds the server."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "status")
        except RuntimeError:
            return False
        return True

    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory."""
        if self.data.exists() and self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
