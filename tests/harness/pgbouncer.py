"""
PgBouncer (Debian's ``pgbouncer`` package) in front of the test PostgreSQL server.

:class:`PgBouncer` writes a temporary configuration — ``pool_mode = transaction``,
``auth_type = trust`` (the user must still be listed in ``auth_file``), one database ``test``
pointing at ``127.0.0.1:5432/test``, a small ``default_pool_size`` so that many clients share
few server connections — and runs ``pgbouncer`` in the foreground as a child process (as the
``postgres`` OS user when the tests run as root: PgBouncer refuses to run as root), listening
on a free ``127.0.0.1`` port. :meth:`PgBouncer.stop` terminates it and deletes the files.

The admin console (database ``pgbouncer``) only speaks the simple query protocol;
:meth:`PgBouncer.show` uses it (``SHOW POOLS``, ``SHOW SERVERS`` …).

Installing: ``apt-get install -y pgbouncer`` (``.ci/run`` does it). The binary is looked up
as ``TXPOLICY_PGBOUNCER``, then ``pgbouncer`` on ``PATH``, then ``/usr/sbin/pgbouncer``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from .replication import free_port

__all__ = ["PgBouncer", "pgbouncer_binary", "pgbouncer_unavailable"]


def pgbouncer_binary() -> str | None:
    """The path of the ``pgbouncer`` executable, or None."""
    configured = os.environ.get("TXPOLICY_PGBOUNCER")
    if configured:
        return configured
    found = shutil.which("pgbouncer")
    if found:
        return found
    return "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None


def pgbouncer_unavailable() -> str | None:
    """None when PgBouncer can be started here, else the reason it cannot."""
    binary = pgbouncer_binary()
    if binary is None:
        return "pgbouncer is not installed (apt-get install -y pgbouncer; or set TXPOLICY_PGBOUNCER)"
    if not os.access(binary, os.X_OK):
        return f"pgbouncer at {binary} is not an executable file"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' OS user to run pgbouncer"
    return None


class PgBouncer:
    """
    A PgBouncer process for the duration of a test module.

    Args:
        upstream_port: the PostgreSQL server's port on 127.0.0.1.
        dbname: the database to expose (same name upstream).
        pool_mode: ``transaction`` (the point of these tests), ``session`` or ``statement``.
        default_pool_size: server connections per (database, user) pair.
        max_client_conn: client connections PgBouncer accepts.
        settings: extra ``[pgbouncer]`` settings.
        users: the user names PgBouncer accepts (``auth_type = trust`` still needs them listed).
    """

    def __init__(
        self,
        *,
        upstream_port: int = 5432,
        dbname: str = "test",
        pool_mode: str = "transaction",
        default_pool_size: int = 4,
        max_client_conn: int = 200,
        settings: dict[str, str] | None = None,
        users: tuple[str, ...] = ("postgres",),
    ) -> None:
        reason = pgbouncer_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        self.binary = pgbouncer_binary()
        self.dbname = dbname
        self.default_pool_size = default_pool_size
        self.users = users
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="txpolicy-pgbouncer-"))
        self.logfile = self.dir / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._config = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "userlist.txt"),
            "admin_users": "postgres",
            "stats_users": "postgres",
            "pool_mode": pool_mode,
            "default_pool_size": str(default_pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": str(max_client_conn),
            "server_reset_query": "DISCARD ALL",
            "ignore_startup_parameters": "extra_float_digits,options",
            "logfile": str(self.logfile),
            "log_connections": "0",
            "log_disconnections": "0",
            **(settings or {}),
        }
        self._databases = {dbname: f"host=127.0.0.1 port={upstream_port} dbname={dbname}"}
        atexit.register(self.stop)

    def start(self, timeout: float = 10.0) -> PgBouncer:
        """Write the configuration, start the process and wait until it accepts connections."""
        try:
            self._write_config()
            self._process = subprocess.Popen(  # noqa: S603 - fixed argument list
                [str(self.binary), str(self.dir / "pgbouncer.ini")],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **_as_server_user(),
            )
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_config(self) -> None:
        lines = ["[databases]"]
        lines += [f"{name} = {conninfo}" for name, conninfo in self._databases.items()]
        lines += ["", "[pgbouncer]"]
        lines += [f"{name} = {value}" for name, value in self._config.items()]
        (self.dir / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        (self.dir / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in self.users))
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            for path in (self.dir, self.dir / "pgbouncer.ini", self.dir / "userlist.txt"):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer not ready after {timeout} s: {last}\n{self.log_tail()}")

    # -- addresses ---------------------------------------------------------------------------

    def url(self, driver: str = "postgresql+psycopg", user: str = "postgres") -> str:
        """A SQLAlchemy URL through PgBouncer."""
        return f"{driver}://{user}@127.0.0.1:{self.port}/{self.dbname}?sslmode=disable"

    def conninfo(self, dbname: str | None = None) -> str:
        """A libpq connection string through PgBouncer (``dbname='pgbouncer'``: the console)."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname or self.dbname} user=postgres sslmode=disable"

    # -- admin console -----------------------------------------------------------------------

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the admin console, as dicts (``show("POOLS")``)."""
        with psycopg.connect(
            self.conninfo("pgbouncer"), autocommit=True, cursor_factory=psycopg.ClientCursor
        ) as conn:
            # The console speaks the simple protocol only: ClientCursor without parameters.
            cursor = conn.execute(f"SHOW {what}".encode())
            assert cursor.description is not None
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def server_connections(self) -> int:
        """How many server connections PgBouncer holds for the test database right now."""
        return sum(1 for row in self.show("SERVERS") if row["database"] == self.dbname)

    def log_tail(self, lines: int = 30) -> str:
        """The end of PgBouncer's log, for error messages."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- teardown ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Terminate PgBouncer and delete its files (idempotent; never raises)."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> PgBouncer:
        """Start PgBouncer."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop PgBouncer."""
        self.stop()


def _as_server_user() -> dict[str, Any]:
    """``subprocess`` keywords that run PgBouncer as a non-root user."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}
