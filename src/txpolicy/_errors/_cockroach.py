"""
CockroachDB: the codes it adds to PostgreSQL's, and how to recognise it.

Sources: "Transaction Retry Error Reference",
https://www.cockroachlabs.com/docs/stable/transaction-retry-error-reference ;
"Transactions: ambiguous commits",
https://www.cockroachlabs.com/docs/stable/transactions#error-handling ;
``pkg/sql/pgwire/pgcode/codes.go`` in the CockroachDB tree.

CockroachDB speaks the PostgreSQL protocol, so an error is only attributed to it where
that is unambiguous: a code PostgreSQL never sends, or ``40001`` / ``40003`` with
CockroachDB's own wording. Everything else is classified as PostgreSQL.
"""

from __future__ import annotations

from .._exceptions import ErrorCategory as C

SQLSTATES: dict[str, C] = {
    "40001": C.SERIALIZATION,  # serialization_failure ("restart transaction")
    "40003": C.COMMIT_UNKNOWN,  # statement_completion_unknown ("result is ambiguous")
    "CR000": C.SERIALIZATION,  # restart_transaction (legacy retry code)
    "58C00": C.CONNECTION,  # range_unavailable
    "58C01": C.CONNECTION,  # internal_connection_failure
    "XXA00": C.UNKNOWN,  # transaction_committed_with_schema_change_failure
    "XXUUU": C.UNKNOWN,  # uncategorized
}
"""The codes whose meaning CockroachDB defines or sharpens."""

ONLY_COCKROACH = frozenset({"CR000", "58C00", "58C01", "XXA00", "XXUUU"})
"""Codes PostgreSQL never sends: seeing one names the dialect."""

MARKERS = {
    "40001": "restart transaction",
    "40003": "result is ambiguous",
}
"""CockroachDB's wording for the codes it shares with PostgreSQL."""


def is_cockroach(sqlstate: str, message: str) -> bool:
    """Whether an error with *sqlstate* and *message* can only have come from CockroachDB."""
    if sqlstate in ONLY_COCKROACH:
        return True
    marker = MARKERS.get(sqlstate)
    return marker is not None and marker in message
