"""A PostgreSQL server for the tests: the machine's server binaries, a cluster in a temporary
folder, listening on 127.0.0.1 and a free port, as the `postgres` user when the tests run as root."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH nor in "
    "/usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get install postgresql; macOS: "
    "brew install postgresql) to run the PostgreSQL run store tests."
)


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, the newest version first; None if there is none."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).parent] if on_path else []
    candidates += [Path(folder) for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgreSQLServer:
    """One cluster: `start()`, `stop()`, `url(schema)`; `close()` stops it and removes its folder."""

    user = "postgres"
    database = "ferroflow_tests"

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="ferroflow-postgres-"))
        self.data = self.folder / "data"
        self.port = free_port()
        # initdb refuses to run as root: run the server as the postgres user, owning the folder.
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8")

    def _run(self, program: str, *arguments: str) -> None:
        command = [*self._as_user, str(self.binaries / program), *arguments]
        completed = subprocess.run(command, capture_output=True, text=True, cwd=self.folder, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}")

    def start(self) -> None:
        options = f"-k {self.folder} -h 127.0.0.1 -p {self.port} -F -c max_connections=200"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        self._wait_until_accepting()

    def _wait_until_accepting(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_url("postgres"), autocommit=True, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url("postgres"), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {self.database}")

    def admin_url(self, database: str | None = None) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database or self.database}"

    def new_schema_url(self, password: str | None = None) -> str:
        """The URL of a store of its own: the test database with a fresh, empty schema first on
        its search path (cheaper than a database per test)."""
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url(), autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        credentials = self.user if password is None else f"{self.user}:{password}"
        return (
            f"postgresql://{credentials}@127.0.0.1:{self.port}/{self.database}"
            f"?options=-c%20search_path%3D{schema}"
        )

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def running_server(binaries: Path) -> Iterator[PostgreSQLServer]:
    """A started server with its database created, stopped and removed on leaving."""
    server = PostgreSQLServer(binaries)
    try:
        server.start()
        server.create_database()
        yield server
    finally:
        server.close()
