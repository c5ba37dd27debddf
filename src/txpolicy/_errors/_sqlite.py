"""
SQLite: primary and extended result codes to category.

Source: "Result and Error Codes", https://www.sqlite.org/rescode.html .

Python 3.11+ puts the extended code on the exception (``sqlite_errorcode``, bpo-16379);
an extended code not listed falls back on its primary code (the low eight bits). Older
Pythons carry no code at all: the message is all there is (``_messages.py``).
"""

from __future__ import annotations

from .._exceptions import ErrorCategory as C

CODES: dict[int, C] = {
    1: C.SCHEMA,  # SQLITE_ERROR (syntax error, no such table / column)
    2: C.UNKNOWN,  # SQLITE_INTERNAL
    3: C.PERMISSION,  # SQLITE_PERM
    4: C.UNKNOWN,  # SQLITE_ABORT
    5: C.LOCK_TIMEOUT,  # SQLITE_BUSY ("database is locked")
    6: C.LOCK_TIMEOUT,  # SQLITE_LOCKED ("database table is locked")
    7: C.RESOURCE,  # SQLITE_NOMEM
    8: C.READ_ONLY,  # SQLITE_READONLY
    9: C.STATEMENT_TIMEOUT,  # SQLITE_INTERRUPT
    10: C.RESOURCE,  # SQLITE_IOERR
    11: C.UNKNOWN,  # SQLITE_CORRUPT
    13: C.RESOURCE,  # SQLITE_FULL
    14: C.CONNECTION,  # SQLITE_CANTOPEN
    15: C.LOCK_TIMEOUT,  # SQLITE_PROTOCOL
    17: C.SCHEMA,  # SQLITE_SCHEMA
    18: C.DATA,  # SQLITE_TOOBIG
    19: C.INTEGRITY,  # SQLITE_CONSTRAINT
    20: C.DATA,  # SQLITE_MISMATCH
    21: C.UNKNOWN,  # SQLITE_MISUSE
    22: C.RESOURCE,  # SQLITE_NOLFS
    23: C.PERMISSION,  # SQLITE_AUTH
    25: C.UNKNOWN,  # SQLITE_RANGE
    26: C.UNKNOWN,  # SQLITE_NOTADB
    261: C.LOCK_TIMEOUT,  # SQLITE_BUSY_RECOVERY
    262: C.LOCK_TIMEOUT,  # SQLITE_LOCKED_SHAREDCACHE
    266: C.RESOURCE,  # SQLITE_IOERR_READ
    275: C.INTEGRITY,  # SQLITE_CONSTRAINT_CHECK
    516: C.UNKNOWN,  # SQLITE_ABORT_ROLLBACK
    517: C.SERIALIZATION,  # SQLITE_BUSY_SNAPSHOT
    518: C.LOCK_TIMEOUT,  # SQLITE_LOCKED_VTAB
    520: C.READ_ONLY,  # SQLITE_READONLY_CANTLOCK
    531: C.INTEGRITY,  # SQLITE_CONSTRAINT_COMMITHOOK
    773: C.LOCK_TIMEOUT,  # SQLITE_BUSY_TIMEOUT
    776: C.READ_ONLY,  # SQLITE_READONLY_ROLLBACK
    787: C.INTEGRITY,  # SQLITE_CONSTRAINT_FOREIGNKEY
    1032: C.READ_ONLY,  # SQLITE_READONLY_DBMOVED
    1043: C.INTEGRITY,  # SQLITE_CONSTRAINT_FUNCTION
    1299: C.INTEGRITY,  # SQLITE_CONSTRAINT_NOTNULL
    1555: C.INTEGRITY,  # SQLITE_CONSTRAINT_PRIMARYKEY
    1811: C.INTEGRITY,  # SQLITE_CONSTRAINT_TRIGGER
    2067: C.INTEGRITY,  # SQLITE_CONSTRAINT_UNIQUE
    2323: C.INTEGRITY,  # SQLITE_CONSTRAINT_VTAB
    2579: C.INTEGRITY,  # SQLITE_CONSTRAINT_ROWID
    3091: C.DATA,  # SQLITE_CONSTRAINT_DATATYPE
}
"""Primary codes, and the extended codes whose meaning differs from or sharpens theirs."""


def category(code: int) -> C:
    """The category of an extended or primary *code*: exact first, then the primary code."""
    found = CODES.get(code)
    if found is not None:
        return found
    return CODES.get(code & 0xFF, C.UNKNOWN)
