"""
A real PostgreSQL streaming-replication pair on this machine, made with the server's own tools.

:class:`ReplicationPair` creates, in a fresh temporary directory:

1. a primary cluster (``initdb``) on a free loopback port, with ``wal_level = replica``,
   WAL senders, a ``replication`` trust entry for ``127.0.0.1`` in ``pg_hba.conf``, and (by
   default) ``synchronous_standby_names = '*'`` so that every commit the primary acknowledges
   is already on the standby — the setting under which a failover may lose nothing;
2. a database ``test`` on it;
3. a standby from ``pg_basebackup -R`` (which writes ``standby.signal`` and
   ``primary_conninfo``) on another free port; ``synchronous_standby_names`` is set on the
   primary only once the standby runs (``ALTER SYSTEM``, after the copy), so that the
   promoted standby never waits for a standby of its own;

then starts both and waits (bounded) until ``pg_stat_replication`` shows the standby
streaming. :meth:`ReplicationPair.promote` runs ``pg_ctl promote -w``;
:meth:`ReplicationPair.stop_primary` stops the primary (``fast`` or ``immediate``, a crash);
:meth:`ReplicationPair.fence_primary` makes the primary refuse writes
(``default_transaction_read_only``), the way failover managers fence a demoted server.
:meth:`ReplicationPair.teardown` stops both servers and deletes the directory; it also runs
at interpreter exit, so a failed test or setup leaves nothing behind.

PostgreSQL refuses to run as root: when the tests run as root the server tools run as the
``postgres`` OS user (``subprocess`` with ``user=``/``group=``). The binaries come from
``TXPOLICY_PG_BIN`` or the newest ``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["Cluster", "ReplicationPair", "free_port", "pg_bin_dir", "replication_unavailable"]

_TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


def pg_bin_dir() -> Path | None:
    """The directory of the PostgreSQL server binaries, or None when there is none."""
    configured = os.environ.get("TXPOLICY_PG_BIN")
    if configured:
        return Path(configured)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    return Path(candidates[-1]) if candidates else None


def replication_unavailable() -> str | None:
    """None when a replication pair can be built here, else the reason it cannot."""
    bindir = pg_bin_dir()
    if bindir is None:
        return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin; set TXPOLICY_PG_BIN)"
    missing = [tool for tool in _TOOLS if not (bindir / tool).exists()]
    if missing:
        return f"PostgreSQL server tools missing from {bindir}: {', '.join(missing)}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' OS user to run the servers"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> dict[str, Any]:
    """``subprocess`` keywords that run a command as the OS user that may run PostgreSQL."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


@dataclass
class Cluster:
    """One PostgreSQL cluster of the pair."""

    name: str
    datadir: Path
    port: int
    socket_dir: Path
    bindir: Path

    @property
    def logfile(self) -> Path:
        """The server log (``pg_ctl -l``)."""
        return self.datadir.parent / f"{self.name}.log"

    def url(self, driver: str = "postgresql+psycopg", dbname: str = "test") -> str:
        """A SQLAlchemy URL for this server alone (TLS off: the cluster has none)."""
        return f"{driver}://postgres@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def conninfo(self, dbname: str = "test") -> str:
        """A libpq connection string for this server alone."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=postgres sslmode=disable connect_timeout=5"

    def is_running(self) -> bool:
        """Whether the postmaster of this cluster is up (its pid file exists)."""
        return (self.datadir / "postmaster.pid").exists()

    def pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``pg_ctl -D <datadir> <args>`` as the server user; raise with its output on failure."""
        return _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args],
            cwd=self.datadir.parent,
            timeout=timeout,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.pg_ctl("-l", str(self.logfile), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``smart``, ``fast`` or ``immediate``) and wait for it to go."""
        if self.is_running():
            self.pg_ctl("-m", mode, "-w", "-t", "30", "stop")

    def execute(self, sql: str, *, dbname: str = "test") -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode and return its rows (empty without a result)."""
        with psycopg.connect(self.conninfo(dbname), autocommit=True) as conn:
            cursor = conn.execute(sql.encode())
            return cursor.fetchall() if cursor.description is not None else []

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for error messages."""
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _run(args: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a server tool; a failure raises ``RuntimeError`` carrying its output."""
    result = subprocess.run(
        args,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "LC_ALL": "C", "PGSSLMODE": "disable"},
        **_as_server_user(),
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


class ReplicationPair:
    """
    A primary and a streaming standby, each on its own loopback port.

    Args:
        synchronous: make the standby synchronous (no acknowledged commit can be lost by a
            failover); ``False`` gives plain asynchronous streaming.
        base_dir: where to put the clusters; a fresh temporary directory by default.
    """

    def __init__(self, *, synchronous: bool = True, base_dir: Path | None = None) -> None:
        reason = replication_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        bindir = pg_bin_dir()
        assert bindir is not None
        self.bindir = bindir
        self.synchronous = synchronous
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="txpolicy-repl-"))
        self.primary = Cluster("primary", self.base / "primary", free_port(), self.base, bindir)
        self.standby = Cluster("standby", self.base / "standby", free_port(), self.base, bindir)
        self.setup_seconds: float | None = None
        self._torn_down = False
        atexit.register(self.teardown)

    # -- building ----------------------------------------------------------------------------

    def start(self) -> ReplicationPair:
        """Create, configure and start both clusters; wait for streaming (tears down on failure)."""
        started = time.monotonic()
        try:
            self._prepare_base()
            self._init_primary()
            self.primary.start()
            self.primary.execute("CREATE DATABASE test", dbname="postgres")
            self._clone_standby()
            self.standby.start()
            if self.synchronous:
                # Only now: with a synchronous standby named and absent, every commit
                # (CREATE DATABASE included) would wait for it.
                self.primary.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                self.primary.execute("SELECT pg_reload_conf()")
            self.wait_streaming()
        except BaseException:
            self.teardown()
            raise
        self.setup_seconds = time.monotonic() - started
        return self

    def _prepare_base(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.base.chmod(0o700)

    def _init_primary(self) -> None:
        _run(
            [
                str(self.bindir / "initdb"), "-D", str(self.primary.datadir), "-U", "postgres",
                "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
            ],
            cwd=self.base,
            timeout=120,
        )
        settings = {
            "port": str(self.primary.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.base}'",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "max_replication_slots": "5",
            "wal_keep_size": "'64MB'",
            "hot_standby": "on",
            "max_connections": "60",
            "shared_buffers": "'32MB'",
            # Durability against a crash of the *process* only, which is all a test needs.
            "fsync": "off",
            "synchronous_commit": "on",
            "ssl": "off",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        _append_conf(self.primary.datadir / "postgresql.conf", settings)
        with (self.primary.datadir / "pg_hba.conf").open("a") as hba:
            hba.write("\n# txpolicy test harness\nhost replication all 127.0.0.1/32 trust\n")

    def _clone_standby(self) -> None:
        _run(
            [
                str(self.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port),
                "-U", "postgres", "-D", str(self.standby.datadir), "-R", "-X", "stream",
                "-c", "fast", "--no-sync",
            ],
            cwd=self.base,
            timeout=120,
        )
        # The base backup copied the primary's postgresql.conf; later lines win. The
        # synchronous setting goes into the primary's postgresql.auto.conf after the copy,
        # so the standby, once promoted, never waits for a standby of its own.
        _append_conf(self.standby.datadir / "postgresql.conf", {"port": str(self.standby.port)})

    def wait_streaming(self, timeout: float = 20.0) -> None:
        """Wait until the primary reports the standby as streaming (``RuntimeError`` after *timeout*)."""
        deadline = time.monotonic() + timeout
        wanted = "sync" if self.synchronous else "async"
        rows: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline:
            rows = self.primary.execute("SELECT state, sync_state FROM pg_stat_replication")
            if ("streaming", wanted) in rows:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"standby not streaming after {timeout} s (pg_stat_replication: {rows});\n"
            f"standby log:\n{self.standby.log_tail()}"
        )

    # -- URLs --------------------------------------------------------------------------------

    def multihost_url(
        self, driver: str = "postgresql+psycopg", dbname: str = "test", **query: str
    ) -> str:
        """
        A SQLAlchemy URL naming both servers, primary first, that only accepts a writable one.

        SQLAlchemy's psycopg dialect turns repeated ``host=h:p`` query entries into libpq's
        ``host=h1,h2 port=p1,p2``; ``target_session_attrs=read-write`` makes libpq skip a
        server in recovery or fenced read-only.
        """
        options = {
            "target_session_attrs": "read-write",
            "connect_timeout": "2",
            "sslmode": "disable",
            **query,
        }
        hosts = f"host=127.0.0.1:{self.primary.port}&host=127.0.0.1:{self.standby.port}"
        extra = "&".join(f"{key}={value}" for key, value in options.items())
        return f"{driver}://postgres@/{dbname}?{hosts}&{extra}"

    # -- failover ----------------------------------------------------------------------------

    def promote(self) -> None:
        """Promote the standby (``pg_ctl promote -w``: returns once it accepts writes)."""
        self.standby.pg_ctl("-w", "-t", "30", "promote")

    def stop_primary(self, mode: str = "fast") -> None:
        """Stop the primary: ``fast`` (clean) or ``immediate`` (as if it crashed)."""
        self.primary.stop(mode)

    def fence_primary(self) -> None:
        """Make the primary refuse writes from new transactions, as a failover manager fences it."""
        self.primary.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        self.primary.execute("SELECT pg_reload_conf()")

    # -- teardown ----------------------------------------------------------------------------

    def teardown(self) -> None:
        """Stop both servers and delete every file (idempotent; never raises)."""
        if self._torn_down:
            return
        self._torn_down = True
        for cluster in (self.standby, self.primary):
            with contextlib.suppress(Exception):
                cluster.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.teardown)

    def __enter__(self) -> ReplicationPair:
        """Start the pair."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Tear the pair down."""
        self.teardown()


def _append_conf(path: Path, settings: dict[str, str]) -> None:
    """Append ``name = value`` lines to a PostgreSQL configuration file."""
    with path.open("a") as conf:
        conf.write("\n# txpolicy test harness\n")
        for name, value in settings.items():
            conf.write(f"{name} = {value}\n")
