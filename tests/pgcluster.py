"""A throwaway PostgreSQL cluster from the Debian server binaries, for tests and benchmarks.

Started into a temporary directory, listening on a free port on 127.0.0.1 (and a socket in
that directory), with durability switched off (``fsync=off``: these databases are thrown
away). PostgreSQL refuses to run as root, so when we are root the server runs as the
``postgres`` OS user through ``runuser``. Plain Python (no pytest) so ``bench/`` can use it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PgClusterError(RuntimeError):
    """The cluster could not be created or started; the message says why."""


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version_key(path: str) -> int:
    part = path.split("/")[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the caller checks returncode
        _as_postgres(cmd), cwd=cwd, capture_output=True, text=True, timeout=60
    )


class PgCluster:
    """``start()`` it, use :attr:`admin_url` (the ``postgres`` superuser, trust auth),
    ``stop()`` it (which also deletes its files)."""

    def __init__(self, extra_options: str = "") -> None:
        self.extra_options = extra_options
        self.admin_url = ""
        self._bindir: Path | None = None
        self._base: Path | None = None

    def start(self) -> str:
        bindir = _bindir()
        if bindir is None:
            raise PgClusterError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: run "
                "scripts/install-test-packages.sh"
            )
        base = Path(tempfile.mkdtemp(prefix="tsunagu-pg-", dir="/tmp"))
        base.chmod(0o700)
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        self._bindir, self._base = bindir, base
        data, log = base / "data", base / "server.log"
        init = _run(
            [
                str(bindir / "initdb"),
                *("-D", str(data), "-U", "postgres", "--auth=trust", "--no-locale"),
                *("-E", "UTF8", "--no-sync"),
            ],
            base,
        )
        if init.returncode != 0:
            self._cleanup()
            raise PgClusterError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        for _ in range(3):
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                f"-c max_connections=200 {self.extra_options}"
            )
            started = _run(
                [
                    str(bindir / "pg_ctl"),
                    *("-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options),
                    "start",
                ],
                base,
            )
            if started.returncode == 0:
                self.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
                return self.admin_url
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self._cleanup()
        raise PgClusterError(f"PostgreSQL did not start:\n{tail}")

    def stop(self) -> None:
        if self._bindir is not None and self._base is not None and self.admin_url:
            _run(
                [
                    str(self._bindir / "pg_ctl"),
                    "-D",
                    str(self._base / "data"),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                self._base,
            )
        self._cleanup()

    def _cleanup(self) -> None:
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
        self._base = None
        self.admin_url = ""
