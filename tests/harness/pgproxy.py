"""
A PostgreSQL-protocol-aware TCP proxy that cuts connections at chosen protocol moments.

The proxy listens on ``127.0.0.1`` (an ephemeral port) and forwards every client connection to
an upstream server (``127.0.0.1:5432`` by default). It reads the frontend/backend protocol
message by message, just enough to know where a connection stands:

- the client's ``Query`` (simple protocol) and ``Parse``/``Bind``/``Execute`` (extended
  protocol) messages, to spot ``COMMIT`` and to count statements;
- the server's ``CommandComplete`` tags and ``ReadyForQuery`` transaction status (``I`` idle,
  ``T`` in a transaction, ``E`` failed transaction).

A test arms a :class:`CutRule` (``proxy.arm(CutRule.before_commit(), times=1)``); the next
``times`` matching moments, on any connection through the proxy, cut that connection (both
sockets closed) at the chosen moment:

``BEFORE_COMMIT``
    the client sent ``COMMIT``; it is *not* forwarded. Nothing was committed.
``AFTER_COMMIT``
    ``COMMIT`` is forwarded; the server's reply (``CommandComplete`` + ``ReadyForQuery``) is
    read and held back, then the connection is cut. The server committed (the recorded
    :class:`CutEvent` says so from the tag it saw) and the client cannot know.
``MID_TRANSACTION``
    inside a transaction block (after ``BEGIN``), once at least ``after_statements``
    statements went through, the next statement (not ``COMMIT``/``ROLLBACK``) is not
    forwarded. Nothing was committed.

The client sees its socket closed: psycopg raises ``OperationalError`` ("server closed the
connection unexpectedly" / "consuming input failed"), exactly as for a network failure.

The proxy answers ``SSLRequest`` and ``GSSENCRequest`` with ``N`` itself, so a client never
negotiates TLS through it (``sslmode=disable`` in client URLs is still the clean choice);
``CancelRequest`` packets are forwarded to the upstream server.

Everything is threads and blocking sockets: one accept thread, two pump threads per
connection. :meth:`PgProxy.close` stops accepting, cuts every connection and joins every
thread, so no socket outlives the proxy (tests run with ``filterwarnings = error``).
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import socket
import struct
import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

__all__ = ["CutEvent", "CutRule", "Moment", "PgProxy", "ProxyArm"]

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_JOIN_TIMEOUT = 5.0
# What the server pump does with one backend message.
_DELIVER, _HOLD, _CUT = object(), object(), object()


class Moment(enum.Enum):
    """Where in the protocol a :class:`CutRule` cuts the connection."""

    BEFORE_COMMIT = "before_commit"
    AFTER_COMMIT = "after_commit"
    MID_TRANSACTION = "mid_transaction"


@dataclass(frozen=True)
class CutRule:
    """
    When to cut a connection.

    ``only_if``: the rule matches only in a transaction one of whose statements (so far,
    the current one included) contains this text — use it to aim at the workload's
    transactions and spare the driver's and SQLAlchemy's own queries.
    """

    moment: Moment
    after_statements: int = 1
    only_if: str | None = None

    def __post_init__(self) -> None:
        """Refuse a rule that can never fire."""
        if not isinstance(self.moment, Moment):
            raise TypeError(f"moment must be a Moment, not {self.moment!r}")
        if self.after_statements < 0:
            raise ValueError("after_statements must be >= 0")

    @classmethod
    def before_commit(cls, *, only_if: str | None = None) -> CutRule:
        """Cut when the client sends COMMIT, before it reaches the server."""
        return cls(Moment.BEFORE_COMMIT, only_if=only_if)

    @classmethod
    def after_commit(cls, *, only_if: str | None = None) -> CutRule:
        """Forward COMMIT, then cut before the client hears the server's answer."""
        return cls(Moment.AFTER_COMMIT, only_if=only_if)

    @classmethod
    def mid_transaction(cls, after_statements: int = 1, *, only_if: str | None = None) -> CutRule:
        """Cut before a statement once at least *after_statements* statements of a transaction ran."""
        return cls(Moment.MID_TRANSACTION, after_statements=after_statements, only_if=only_if)


@dataclass(frozen=True)
class CutEvent:
    """
    One cut, as the proxy saw it.

    ``committed`` is what the server did with the transaction: ``False`` when the cut came
    before the COMMIT reached it, ``True`` when it answered ``COMMIT``, ``False`` when it
    answered ``ROLLBACK`` (the transaction had failed), ``None`` when the server's answer
    never arrived (the server itself went away).
    """

    rule: CutRule
    connection_id: int
    committed: bool | None
    sql: str


@dataclass
class ProxyArm:
    """An armed rule: fires up to ``times`` more times; ``fired`` counts the cuts it made."""

    rule: CutRule
    times: int
    fired: int = 0
    _proxy: PgProxy | None = field(default=None, repr=False)

    def remove(self) -> None:
        """Disarm the rule (idempotent)."""
        if self._proxy is not None:
            self._proxy._disarm(self)

    def __enter__(self) -> ProxyArm:
        """Disarm on leaving the ``with`` block."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Disarm."""
        self.remove()


def _is_commit(sql: str) -> bool:
    """Whether *sql* is a plain COMMIT / END (not COMMIT PREPARED)."""
    words = sql.strip().rstrip(";").strip().upper().split()
    return words in (["COMMIT"], ["END"], ["COMMIT", "WORK"], ["COMMIT", "TRANSACTION"],
                     ["END", "WORK"], ["END", "TRANSACTION"])


def _is_rollback(sql: str) -> bool:
    """Whether *sql* ends the transaction with a ROLLBACK / ABORT."""
    words = sql.strip().upper().split()
    return bool(words) and words[0] in ("ROLLBACK", "ABORT") and "TO" not in words


def _cstring(body: bytes, start: int) -> tuple[str, int]:
    """The NUL-terminated string at *start* of a message body, and the offset after it."""
    end = body.index(b"\0", start)
    return body[start:end].decode("utf-8", "replace"), end + 1


class _Cut(Exception):
    """Raised inside a pump to cut the connection."""


class _Connection:
    """One client connection and its upstream; pumps messages both ways."""

    def __init__(self, proxy: PgProxy, cid: int, client: socket.socket) -> None:
        self.proxy = proxy
        self.cid = cid
        self.client = client
        self.server: socket.socket | None = None
        self.lock = threading.Lock()
        self.closed = threading.Event()
        # Protocol state, guarded by self.lock.
        self.tx_status = "I"
        self.statements_in_tx = 0
        self.tx_sql: list[str] = []
        self.statements: dict[str, str] = {}  # prepared statement name -> SQL
        self.portals: dict[str, str] = {}  # portal name -> SQL
        self.pending_after_commit: tuple[CutRule, str] | None = None
        self.held_tag: str | None = None  # the tag of the held answer to COMMIT
        self.thread = threading.Thread(target=self._run, name=f"pgproxy-conn-{cid}", daemon=True)
        self.s2c_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def cut(self) -> None:
        """Close both directions now; the pumps wake up and exit."""
        self.closed.set()
        for sock in (self.client, self.server):
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed by the peer
                    sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        try:
            self._startup()
            assert self.server is not None
            self.s2c_thread = threading.Thread(
                target=self._pump_server, name=f"pgproxy-s2c-{self.cid}", daemon=True
            )
            self.s2c_thread.start()
            self._pump_client()
        except (_Cut, OSError, ValueError, struct.error):
            pass
        finally:
            self.cut()
            if self.s2c_thread is not None:
                self.s2c_thread.join(_JOIN_TIMEOUT)
            self.client.close()
            if self.server is not None:
                self.server.close()
            self.proxy._forget(self)

    def _startup(self) -> None:
        """Handle SSL/GSS negotiation ourselves, forward the startup packet or a cancel."""
        while True:
            head = _recv_exact(self.client, 8)
            length, code = struct.unpack("!ii", head)
            rest = _recv_exact(self.client, length - 8)
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                self.client.sendall(b"N")
                continue
            self.server = socket.create_connection(self.proxy.upstream, timeout=10)
            self.server.settimeout(None)
            self.server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.server.sendall(head + rest)
            if code == _CANCEL_REQUEST:
                raise _Cut
            return

    # -- client -> server --------------------------------------------------------------------

    def _pump_client(self) -> None:
        assert self.server is not None
        while not self.closed.is_set():
            kind, body = _recv_message(self.client)
            if not self._client_message(kind, body):
                raise _Cut
            self.server.sendall(kind + struct.pack("!i", len(body) + 4) + body)

    def _client_message(self, kind: bytes, body: bytes) -> bool:
        """Track one frontend message; False to cut the connection before forwarding it."""
        sql: str | None = None
        if kind == b"Q":
            sql, _ = _cstring(body, 0)
        elif kind == b"P":
            name, offset = _cstring(body, 0)
            query, _ = _cstring(body, offset)
            with self.lock:
                self.statements[name] = query
            return True
        elif kind == b"B":
            portal, offset = _cstring(body, 0)
            statement, _ = _cstring(body, offset)
            with self.lock:
                self.portals[portal] = self.statements.get(statement, "")
            return True
        elif kind == b"E":
            portal, _ = _cstring(body, 0)
            with self.lock:
                sql = self.portals.get(portal, "")
        if sql is None:
            return True
        return self._statement(sql)

    def _statement(self, sql: str) -> bool:
        """A statement is about to be forwarded: decide whether a rule cuts here."""
        with self.lock:
            self.tx_sql.append(sql)
            tx_text = "\n".join(self.tx_sql)
            in_tx = self.tx_status in ("T", "E")
            if _is_commit(sql):
                self.statements_in_tx = 0
                rule = self.proxy._match(Moment.BEFORE_COMMIT, tx_text, self.cid, False)
                if rule is not None:
                    return False
                rule = self.proxy._match(Moment.AFTER_COMMIT, tx_text, self.cid, None)
                if rule is not None:
                    self.pending_after_commit = (rule, tx_text)
                return True
            if _is_rollback(sql) or not in_tx:
                return True
            rule = self.proxy._match(
                Moment.MID_TRANSACTION, tx_text, self.cid, False, self.statements_in_tx
            )
            if rule is not None:
                return False
            self.statements_in_tx += 1
            return True

    # -- server -> client --------------------------------------------------------------------

    def _pump_server(self) -> None:
        assert self.server is not None
        try:
            while not self.closed.is_set():
                kind, body = _recv_message(self.server)
                verdict = self._server_message(kind, body)
                if verdict is _CUT:
                    break
                if verdict is _DELIVER:
                    self.client.sendall(kind + struct.pack("!i", len(body) + 4) + body)
        except (OSError, ValueError, struct.error):
            pass
        finally:
            with self.lock:
                pending = self.pending_after_commit
                self.pending_after_commit = None
            if pending is not None:
                # The server went away before answering the COMMIT.
                self.proxy._record(CutEvent(pending[0], self.cid, None, pending[1]))
            self.cut()

    def _server_message(self, kind: bytes, body: bytes) -> object:
        """Track one backend message: deliver it, hold it back, or cut the connection."""
        with self.lock:
            holding = self.pending_after_commit is not None
            if kind == b"C" and holding:
                self.held_tag, _ = _cstring(body, 0)
            if kind != b"Z":
                return _HOLD if holding else _DELIVER
            self.tx_status = chr(body[0])
            if self.tx_status == "I":
                self.statements_in_tx = 0
                self.tx_sql.clear()
            if not holding:
                return _DELIVER
            pending = self.pending_after_commit
            assert pending is not None
            self.pending_after_commit = None
            committed = self.held_tag == "COMMIT"
            self.proxy._record(CutEvent(pending[0], self.cid, committed, pending[1]))
            return _CUT


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly *size* bytes, or raise ``ConnectionError`` at EOF."""
    chunks = []
    while size:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise ConnectionAbortedError("peer closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _recv_message(sock: socket.socket) -> tuple[bytes, bytes]:
    """One typed protocol message: (type byte, body without the length word)."""
    head = _recv_exact(sock, 5)
    (length,) = struct.unpack("!i", head[1:])
    return head[:1], _recv_exact(sock, length - 4)


class PgProxy:
    """
    The proxy. Use as a context manager, or call :meth:`close` yourself.

    Args:
        upstream: the server to forward to (``(host, port)``); loopback only.
    """

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        if upstream[0] not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the proxy only forwards to loopback addresses")
        self.upstream = upstream
        self._lock = threading.Lock()
        self._arms: list[ProxyArm] = []
        self._connections: dict[int, _Connection] = {}
        self._events: list[CutEvent] = []
        self._ids = itertools.count(1)
        self.connections_accepted = 0
        self._closing = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self.host, self.port = self._listener.getsockname()[:2]
        self._accept_thread = threading.Thread(target=self._accept, name="pgproxy-accept", daemon=True)
        self._accept_thread.start()

    # -- public API --------------------------------------------------------------------------

    def url(self, base_url: str) -> str:
        """*base_url* (a SQLAlchemy URL) pointed at the proxy, with ``sslmode=disable``."""
        parsed = make_url(base_url).set(host=self.host, port=self.port)
        parsed = parsed.update_query_dict({"sslmode": "disable"})
        return parsed.render_as_string(hide_password=False)

    def conninfo(self, dbname: str = "test", user: str = "postgres") -> str:
        """A libpq connection string through the proxy."""
        return f"host={self.host} port={self.port} dbname={dbname} user={user} sslmode=disable"

    def arm(self, rule: CutRule, times: int = 1) -> ProxyArm:
        """Arm *rule* for the next *times* matching moments, on any connection."""
        if times < 1:
            raise ValueError("times must be >= 1")
        handle = ProxyArm(rule, times, _proxy=self)
        with self._lock:
            self._arms.append(handle)
        return handle

    def disarm_all(self) -> None:
        """Remove every armed rule."""
        with self._lock:
            self._arms.clear()

    @property
    def events(self) -> list[CutEvent]:
        """A copy of the cuts made so far, in order."""
        with self._lock:
            return list(self._events)

    @property
    def active_connections(self) -> int:
        """How many client connections are open through the proxy."""
        with self._lock:
            return len(self._connections)

    def cut_all(self) -> int:
        """Cut every open connection now (a network partition); returns how many."""
        with self._lock:
            connections = list(self._connections.values())
        for conn in connections:
            conn.cut()
        return len(connections)

    def close(self) -> None:
        """Stop accepting, cut every connection and join every thread (idempotent)."""
        self._closing.set()
        self._accept_thread.join(_JOIN_TIMEOUT)
        self._listener.close()
        with self._lock:
            connections = list(self._connections.values())
        for conn in connections:
            conn.cut()
        for conn in connections:
            conn.thread.join(_JOIN_TIMEOUT)

    def __enter__(self) -> PgProxy:
        """The proxy itself."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the proxy."""
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, next(self._ids), client)
            with self._lock:
                if self._closing.is_set():
                    client.close()
                    return
                self._connections[conn.cid] = conn
                self.connections_accepted += 1
            conn.start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.pop(conn.cid, None)

    def _disarm(self, handle: ProxyArm) -> None:
        with self._lock:
            if handle in self._arms:
                self._arms.remove(handle)

    def _record(self, event: CutEvent) -> None:
        with self._lock:
            self._events.append(event)

    def _match(
        self,
        moment: Moment,
        tx_text: str,
        cid: int,
        committed: bool | None,
        statements_done: int | None = None,
    ) -> CutRule | None:
        """Consume one firing of the first armed rule that matches; record the cut."""
        with self._lock:
            for handle in self._arms:
                rule = handle.rule
                if rule.moment is not moment:
                    continue
                if statements_done is not None and statements_done < rule.after_statements:
                    continue
                if rule.only_if is not None and rule.only_if not in tx_text:
                    continue
                handle.fired += 1
                if handle.fired >= handle.times:
                    self._arms.remove(handle)
                if moment is not Moment.AFTER_COMMIT:
                    # AFTER_COMMIT is recorded when the server's answer is known.
                    self._events.append(CutEvent(rule, cid, committed, tx_text))
                return rule
        return None
