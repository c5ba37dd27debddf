"""
A transfer workload whose outcome can be audited after any fault.

:class:`Bank` creates two uniquely named tables on a server: ``accounts`` (``id``,
``balance``) and ``ledger`` (one row per transfer, keyed by the transfer's unique id). A transfer
inserts its ledger row and moves the amount between two accounts, all in one transaction, so
after any run:

- the sum of the balances never changes;
- each account's balance is its initial balance plus what the ledger says it received, minus
  what it sent (ledger and balances commit together or not at all);
- a transfer id appears in the ledger at most once (the primary key), i.e. nothing was applied
  twice.

:class:`Outcomes` records, thread-safely, what each call told its caller: ``ok`` (returned),
``unknown`` (:class:`txpolicy.CommitUnknownError`: the commit may or may not have happened) or
``failed`` (any other error). :meth:`Bank.audit` checks the ledger against them: every ``ok``
transfer is in the ledger (nothing committed was lost), no ``failed`` one is, and every ledger
row belongs to an ``ok`` or ``unknown`` call.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

__all__ = ["Audit", "Bank", "Outcomes", "run_threads"]


@dataclass
class Outcomes:
    """What each transfer call reported to its caller, by transfer id."""

    ok: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    failed: dict[str, BaseException] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, transfer_id: str, error: BaseException | None) -> None:
        """Record one call's outcome (``None``: it returned)."""
        from txpolicy import CommitUnknownError  # noqa: PLC0415 - keeps the harness importable alone

        with self._lock:
            if error is None:
                self.ok.add(transfer_id)
            elif isinstance(error, CommitUnknownError):
                self.unknown.add(transfer_id)
                self.errors[type(error).__name__] += 1
            else:
                self.failed[transfer_id] = error
                self.errors[type(error).__name__] += 1

    @property
    def calls(self) -> int:
        """How many calls were recorded."""
        with self._lock:
            return len(self.ok) + len(self.unknown) + len(self.failed)


@dataclass(frozen=True)
class Audit:
    """The result of :meth:`Bank.audit`: empty lists mean the invariants hold."""

    lost: list[str]
    applied_though_failed: list[str]
    unexplained: list[str]
    duplicates: int
    total_before: int
    total_after: int
    mismatched_accounts: list[int]
    unknown_committed: int
    unknown_not_committed: int
    ledger_rows: int

    @property
    def holds(self) -> bool:
        """Whether every invariant holds."""
        return (
            not self.lost
            and not self.applied_though_failed
            and not self.unexplained
            and self.duplicates == 0
            and self.total_before == self.total_after
            and not self.mismatched_accounts
        )


class Bank:
    """
    The two tables of the workload on one server (PostgreSQL or MariaDB).

    Args:
        admin: an engine straight to the server (never through a fault injector), used to
            create, audit and drop the tables.
        accounts: how many accounts (few accounts: more contention).
        initial: every account's initial balance.
        ordered: update the two accounts of a transfer in ascending id order, so that
            transfers never deadlock (a deadlock stalls its victims for ``deadlock_timeout``).
    """

    def __init__(
        self, admin: sa.Engine, *, accounts: int = 8, initial: int = 1000, ordered: bool = False
    ) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.admin = admin
        self.accounts_table = f"t_acc_{suffix}"
        self.ledger_table = f"t_led_{suffix}"
        self.n_accounts = accounts
        self.initial = initial
        self.ordered = ordered
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()
        with admin.begin() as conn:
            conn.execute(sa.text(
                f"CREATE TABLE {self.accounts_table} (id integer PRIMARY KEY, balance integer NOT NULL)"
            ))
            conn.execute(sa.text(
                f"CREATE TABLE {self.ledger_table} (id varchar(64) PRIMARY KEY, "
                "src integer NOT NULL, dst integer NOT NULL, amount integer NOT NULL)"
            ))
            conn.execute(
                sa.text(f"INSERT INTO {self.accounts_table} (id, balance) VALUES (:id, :balance)"),
                [{"id": i, "balance": initial} for i in range(1, accounts + 1)],
            )

    def drop(self) -> None:
        """Drop both tables."""
        with self.admin.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.ledger_table}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.accounts_table}"))

    def new_transfer(self, rng: random.Random) -> tuple[str, int, int, int]:
        """A fresh (transfer id, source, target, amount)."""
        with self._lock:
            number = next(self._ids)
        src, dst = rng.sample(range(1, self.n_accounts + 1), 2)
        return f"tr-{number}-{uuid.uuid4().hex[:8]}", src, dst, rng.randint(1, 20)

    def transfer(self, session: Any, transfer_id: str, src: int, dst: int, amount: int) -> None:
        """The body of one transfer: ledger row first, then the two balances."""
        session.execute(
            sa.text(
                f"INSERT INTO {self.ledger_table} (id, src, dst, amount) "
                "VALUES (:id, :src, :dst, :amount)"
            ),
            {"id": transfer_id, "src": src, "dst": dst, "amount": amount},
        )
        self._move(session, src, dst, amount)

    def _move(self, session: Any, src: int, dst: int, amount: int) -> None:
        update = sa.text(f"UPDATE {self.accounts_table} SET balance = balance + :delta WHERE id = :id")
        steps = [(src, -amount), (dst, amount)]
        if self.ordered:
            steps.sort()
        for account, delta in steps:
            session.execute(update, {"delta": delta, "id": account})

    def idempotent_transfer(
        self, session: Any, transfer_id: str, src: int, dst: int, amount: int
    ) -> bool:
        """A transfer that does nothing when its id is already in the ledger (PostgreSQL); True if applied."""
        inserted = session.execute(
            sa.text(
                f"INSERT INTO {self.ledger_table} (id, src, dst, amount) "
                "VALUES (:id, :src, :dst, :amount) ON CONFLICT (id) DO NOTHING RETURNING id"
            ),
            {"id": transfer_id, "src": src, "dst": dst, "amount": amount},
        ).first()
        if inserted is None:
            return False
        self._move(session, src, dst, amount)
        return True

    def is_applied(self, session: Any, transfer_id: str) -> bool:
        """Whether the ledger has *transfer_id* (a ``verify`` callback)."""
        row = session.execute(
            sa.text(f"SELECT 1 FROM {self.ledger_table} WHERE id = :id"), {"id": transfer_id}
        ).first()
        return row is not None

    def audit(self, outcomes: Outcomes, engine: sa.Engine | None = None) -> Audit:
        """Check the tables (on *engine*, default the admin engine) against *outcomes*."""
        with (engine or self.admin).connect() as conn:
            ledger = conn.execute(
                sa.text(f"SELECT id, src, dst, amount FROM {self.ledger_table}")
            ).all()
            balances = dict(conn.execute(
                sa.text(f"SELECT id, balance FROM {self.accounts_table}")
            ).all())
        ids = [row[0] for row in ledger]
        present = set(ids)
        expected = dict.fromkeys(range(1, self.n_accounts + 1), self.initial)
        for _, src, dst, amount in ledger:
            expected[src] -= amount
            expected[dst] += amount
        return Audit(
            lost=sorted(outcomes.ok - present),
            applied_though_failed=sorted(set(outcomes.failed) & present),
            unexplained=sorted(present - outcomes.ok - outcomes.unknown),
            duplicates=len(ids) - len(present),
            total_before=self.initial * self.n_accounts,
            total_after=sum(balances.values()),
            mismatched_accounts=sorted(i for i in expected if expected[i] != balances.get(i)),
            unknown_committed=len(outcomes.unknown & present),
            unknown_not_committed=len(outcomes.unknown - present),
            ledger_rows=len(ids),
        )


def run_threads(target: Callable[[int], None], threads: int, timeout: float = 60.0) -> None:
    """Run ``target(i)`` in *threads* threads and join them (bounded); re-raise the first crash."""
    crashes: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as exc:
            crashes.append(exc)

    workers = [threading.Thread(target=guarded, args=(i,), name=f"workload-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout)
    alive = [worker.name for worker in workers if worker.is_alive()]
    if alive:
        raise RuntimeError(f"workload threads still running after {timeout} s: {alive}")
    if crashes:
        raise crashes[0]
