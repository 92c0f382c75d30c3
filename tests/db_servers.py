"""PostgreSQL and Redis from Debian's packages, on loopback, for tests/test_database_servers.py.

The servers are the application's database and cache as the exporters see them: started on a
free 127.0.0.1 port with a throwaway data directory, never a Unix socket, torn down after. When
the tests run as root, both run as nobody (initdb and postgres refuse root, and Redis needs no
more). Startup and shutdown waits are bounded.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import psycopg
import pytest
import redis

from tests.ports import free_port
from tests.conftest import INSTALL_HINT, require_tool

NOBODY = 65534
START_WAIT = 60.0
STOP_WAIT = 30.0


def _version_key(path: str) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def debian_file(pattern: str, package: str) -> str:
    """The newest file matching pattern, which Debian's package installs; missing fails the test."""
    found = sorted(glob.glob(pattern), key=_version_key)
    if not found:
        pytest.fail(f"{pattern} is missing: Debian's {package} package is not installed: {INSTALL_HINT} "
                    "(it installs the system packages the tests need)", pytrace=False)
    return found[-1]


def unprivileged() -> dict:
    """Popen keywords that drop root for the servers (nothing to drop otherwise)."""
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}


def server_directory(prefix: str) -> Path:
    """A private directory the servers' user owns: pytest's tmp_path lies under a root-only 0700
    directory that nobody could not enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    return path


def _stop(proc: Optional[subprocess.Popen], sig: int) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_WAIT)


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class Postgres:
    """One PostgreSQL cluster: superuser postgres (a random password, SCRAM over TCP)."""

    def __init__(self, settings: dict[str, str]):
        postgres = debian_file("/usr/lib/postgresql/*/bin/postgres", "postgresql")
        self.bindir = Path(postgres).parent
        if not os.access(self.bindir / "initdb", os.X_OK):
            pytest.fail(f"{self.bindir}/initdb is missing: {INSTALL_HINT}", pytrace=False)
        self.root = server_directory("fm-postgres-")
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.settings = settings
        self.proc: Optional[subprocess.Popen] = None
        password_file = self.root / "superuser-password"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(password_file, NOBODY, NOBODY)
        init = subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                               f"--pwfile={password_file}", "--auth-host=scram-sha-256", "--auth-local=reject",
                               "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                              capture_output=True, text=True, timeout=120, cwd=self.root, **unprivileged())
        password_file.unlink()
        if init.returncode != 0:
            pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}", pytrace=False)

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        argv = [str(self.bindir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", ""]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, **unprivileged())
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"postgres exited with {self.proc.returncode}:\n{_tail(self.log)}", pytrace=False)
            try:
                self.connect().close()
                return
            except psycopg.OperationalError:
                time.sleep(0.2)
        pytest.fail(f"postgres did not accept connections within {START_WAIT} s:\n{_tail(self.log)}", pytrace=False)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # fast shutdown: open sessions are ended

    def connect(self, user: str = "postgres", password: Optional[str] = None, dbname: str = "postgres",
                autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=user,
                               password=self.password if password is None else password, dbname=dbname,
                               connect_timeout=5, autocommit=autocommit, application_name="fm-test")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """One redis-server with a password (requirepass) and the given settings."""

    def __init__(self, password: str, settings: dict[str, str]):
        self.binary = require_tool("redis-server")
        self.root = server_directory("fm-redis-")
        self.log = self.root / "redis.log"
        self.port = free_port()
        self.password = password
        self.settings = settings
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        argv = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root),
                "--requirepass", self.password, "--daemonize", "no", "--save", "", "--appendonly", "no"]
        for key, value in self.settings.items():
            argv += [f"--{key}", value]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.root, env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         **unprivileged())
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode}:\n{_tail(self.log)}", pytrace=False)
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.2)
        pytest.fail(f"redis-server did not answer within {START_WAIT} s:\n{_tail(self.log)}", pytrace=False)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=10,
                           socket_connect_timeout=5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
