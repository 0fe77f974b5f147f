"""A throwaway PostgreSQL server for the tests and the benchmark: initdb and
pg_ctl into a temporary directory, on a free port of 127.0.0.1 (and a Unix
socket in that directory), stopped when the `server()` block ends. PostgreSQL
refuses to run as root, and CI runs as root: the server then runs as the
`postgres` user (made by Debian's package) or `nobody`. No PostgreSQL raises
PostgresMissing (the tests fail on it, never skip)."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SEARCH = ["/usr/local/bin", *sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin")))]
MISSING = (
    "PostgreSQL is not installed: the PostgreSQL state tests need initdb and pg_ctl "
    "(scripts/system-deps.sh installs the distribution's postgresql package; looked on "
    "PATH and in {where})"
)


class PostgresMissing(RuntimeError):
    """PostgreSQL is not installed, or could not be started."""


def binary(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for d in SEARCH if (p := Path(d) / name).exists()), None
    )
    if found is None:
        raise PostgresMissing(MISSING.format(where=", ".join(SEARCH)))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: `url(name)` for a database on it, `fresh()` for a new empty one."""

    port: int
    directory: Path
    names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def fresh(self) -> str:
        """A new, empty database."""
        import psycopg

        name = f"t{next(self.names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _as_user() -> tuple[list[str], str | None]:
    """How to run the server's commands: as ourselves, or as an unprivileged user."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return [shutil.which("runuser") or "/sbin/runuser", "-u", user, "--"], user
    raise PostgresMissing("running as root with neither a postgres nor a nobody user")


@contextlib.contextmanager
def server() -> Iterator[Server]:
    initdb, pg_ctl = binary("initdb"), binary("pg_ctl")
    prefix, user = _as_user()
    directory = Path(tempfile.mkdtemp(prefix="balance-bot-pg-"))
    data = directory / "data"
    if user is not None:
        shutil.chown(directory, user)
    port = free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise PostgresMissing(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}"
            )

    run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-k {directory} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    options += " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(directory / "log"), "-w", "start")
    try:
        yield Server(port, directory)
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(directory, ignore_errors=True)
