"""
The starvation guard of ``RetryPolicy(escalate_after=k)``: who runs when an attempt escalates.

After *k* failed attempts of one call, its next attempts *escalate* (the decision is
:func:`txpolicy._decide.escalates`). An escalated attempt must not be able to lose again to
the transactions it keeps losing to, so two things happen:

1. **In the process**, every owner attempt on a bind whose policy sets ``escalate_after``
   passes a :class:`Gate`: a writer-preferring turnstile. An escalated attempt queues (first
   come, first served), new attempts of the bind wait while it is queued or running, the
   attempts already running finish, and then it runs alone. The waiting happens *before*
   BEGIN, with no connection checked out: a transaction that waited on a lock inside
   SERIALIZABLE or REPEATABLE READ would run on a snapshot taken before the wait and lose
   again to whatever committed meanwhile.
2. **Across processes** (PostgreSQL), the escalated attempt also takes a transaction-scoped
   advisory lock whose key is derived from the URL (:func:`lock_key`), so escalated
   transactions of every process that uses the same URL run one at a time. It is taken
   without waiting (``pg_try_advisory_xact_lock``) as the first statement of the
   transaction; when another process holds it, the shell waits for it in a transaction of
   its own that is then rolled back, and tries again in a fresh one — for the same snapshot
   reason. COMMIT and ROLLBACK release it.

Measurements (pgbench's TPC-B at scale 1, SERIALIZABLE, 8 threads) are in ``docs/scale.md``:
serialising only the escalated attempts among themselves does not stop them losing, because
the transactions that beat them are the ones that just committed and started again at once;
the turnstile is what makes them win.

Bounded patience: a turnstile that waits for others can deadlock with code that waits for
another thread's transaction while inside its own (a transaction that starts a worker thread
on the same bind and joins it). Nobody waits at the gate for more than :data:`PATIENCE`
seconds; past that, the attempt goes in out of turn (the guarantee is lost for that attempt,
not the progress of the program). A scope nested in another scope that already passed the
same gate (``requires_new``, or an asyncio task started inside the scope) does not pass it
again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import threading
import time
import weakref
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    import sqlalchemy as sa

__all__ = ["NORMAL", "PATIENCE", "Gate", "gate_for", "lock_key"]

PATIENCE: Final = 1.0
"""Seconds an attempt waits at the gate at most before it goes in out of turn."""

NORMAL: Final = object()
"""The token of a non-escalated attempt inside the gate (escalated ones get a ticket)."""

_monotonic = time.monotonic


class Gate:
    """
    The in-process turnstile of one bind (see the module docstring).

    State, guarded by one lock: the number of normal attempts inside, the queue of escalated
    tickets (waiting, and those inside), and how many escalated attempts are inside. A normal
    attempt goes in when no ticket is queued; an escalated one when its ticket is first in
    line, nobody is inside and no other escalated attempt is. Every change wakes every
    waiter, who checks again (there are at most as many waiters as threads and tasks).
    """

    __slots__ = ("__weakref__", "_escalated_inside", "_lock", "_normal", "_queue", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._normal = 0
        self._escalated_inside = 0
        self._queue: collections.deque[object] = collections.deque()
        self._waiters: list[Callable[[], object]] = []

    # -- the state machine (call with the lock held) -------------------------------------------

    def _admit(self, ticket: object, *, forced: bool) -> bool:
        """Let *ticket* (``NORMAL`` or an escalated ticket) in, if it is its turn or *forced*."""
        if ticket is NORMAL:
            if forced or not self._queue:
                self._normal += 1
                return True
            return False
        if forced or (self._queue[0] is ticket and not self._normal and not self._escalated_inside):
            self._escalated_inside += 1
            return True
        return False

    def _wake(self) -> None:
        """Wake every waiter; each one checks its turn again."""
        waiters, self._waiters = self._waiters, []
        for wake in waiters:
            wake()

    def _abandon(self, ticket: object) -> None:
        """A waiter gave up (interrupted or cancelled): its ticket leaves the queue."""
        if ticket is not NORMAL:
            with self._lock:
                self._queue.remove(ticket)
                self._wake()

    def _ticket(self, *, escalated: bool) -> object:
        """``NORMAL``, or a fresh ticket at the end of the escalated queue."""
        if not escalated:
            return NORMAL
        ticket = object()
        with self._lock:
            self._queue.append(ticket)
        return ticket

    # -- public to the shells ------------------------------------------------------------------

    def enter(self, *, escalated: bool) -> object:
        """Wait for our turn (threads); return the token to give :meth:`leave`."""
        if not escalated:  # the fast path: no escalated attempt queued
            with self._lock:
                if not self._queue:
                    self._normal += 1
                    return NORMAL
        ticket = self._ticket(escalated=escalated)
        deadline = _monotonic() + PATIENCE
        try:
            while True:
                with self._lock:
                    remaining = deadline - _monotonic()
                    if self._admit(ticket, forced=remaining <= 0):
                        return ticket
                    event = threading.Event()
                    self._waiters.append(event.set)
                event.wait(remaining)
        except BaseException:
            self._abandon(ticket)
            raise

    async def aenter(self, *, escalated: bool) -> object:
        """Wait for our turn (asyncio tasks; the gate may be shared with other loops)."""
        if not escalated:  # the fast path: no escalated attempt queued
            with self._lock:
                if not self._queue:
                    self._normal += 1
                    return NORMAL
        ticket = self._ticket(escalated=escalated)
        deadline = _monotonic() + PATIENCE
        loop = asyncio.get_running_loop()
        try:
            while True:
                with self._lock:
                    remaining = deadline - _monotonic()
                    if self._admit(ticket, forced=remaining <= 0):
                        return ticket
                    future: asyncio.Future[None] = loop.create_future()
                    self._waiters.append(_future_waker(loop, future))
                await asyncio.wait((future,), timeout=remaining)
        except BaseException:
            self._abandon(ticket)
            raise

    def leave(self, token: object) -> None:
        """The attempt that entered with *token* is over (committed, rolled back or dropped)."""
        with self._lock:
            if token is NORMAL:
                self._normal -= 1
            else:
                self._escalated_inside -= 1
                self._queue.remove(token)
            if self._waiters:
                self._wake()

    def __repr__(self) -> str:
        return (
            f"<txpolicy escalation gate: {self._normal} normal inside, "
            f"{self._escalated_inside} escalated inside, {len(self._queue)} queued>"
        )


def _future_waker(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]
) -> Callable[[], None]:
    """Resolve *future* on its own loop, from any thread; a closed loop has nobody to wake."""

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop
            loop.call_soon_threadsafe(resolve)

    return wake


_GATES: weakref.WeakValueDictionary[Hashable, Gate] = weakref.WeakValueDictionary()
_GATES_LOCK = threading.Lock()


def gate_for(key: Hashable) -> Gate:
    """
    The gate of the bind whose adapter key is *key* (one per bind and process).

    Bindings hold their gate; when none does any more, the entry goes away with it.
    """
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = Gate()
        return gate


def lock_key(url: sa.URL) -> int:
    """
    The PostgreSQL advisory lock key of escalated transactions on *url*: a signed 64-bit int.

    Derived from the server(s), port, database and query of the URL — not the driver, user or
    password — so that every process (sync or async, psycopg or asyncpg) that uses the same
    URL shares one queue of escalated transactions. The first 8 bytes of a BLAKE2b digest.
    """
    query = sorted((name, str(value)) for name, value in url.query.items())
    text = (
        f"txpolicy.escalation:{url.get_backend_name()}://{url.host or ''}:{url.port or ''}"
        f"/{url.database or ''}?{query}"
    )
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
