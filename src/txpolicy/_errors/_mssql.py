"""
SQL Server: native error numbers and ODBC SQLSTATEs to category.

Sources: "Database engine events and errors" (the native numbers),
https://learn.microsoft.com/sql/relational-databases/errors-events/ ;
"ODBC Error Codes" (Appendix A of the ODBC Programmer's Reference),
https://learn.microsoft.com/sql/odbc/reference/appendixes/appendix-a-odbc-error-codes ;
"Transient errors" for Azure SQL,
https://learn.microsoft.com/azure/azure-sql/database/troubleshoot-common-errors-issues ;
FreeTDS/DB-Library client numbers (2000x) as pymssql raises them.

pyodbc puts the ODBC SQLSTATE in ``args[0]`` and the native number in parentheses in
the message (``"... Rerun the transaction. (1205) (SQLExecDirectW)"``); pymssql puts the
native number in ``args[0]``. The native number is more precise (SQL Server reports a
deadlock and a snapshot conflict both as ODBC ``40001``), so it is looked up first.
"""

from __future__ import annotations

from .._exceptions import ErrorCategory as C

NUMBERS: dict[int, C] = {
    -2: C.STATEMENT_TIMEOUT,  # client timeout (SqlClient)
    20: C.CONNECTION,  # instance does not support encryption / transport error
    64: C.CONNECTION,  # specified network name is no longer available
    102: C.SCHEMA,  # incorrect syntax
    121: C.CONNECTION,  # semaphore timeout period has expired
    156: C.SCHEMA,  # incorrect syntax near keyword
    207: C.SCHEMA,  # invalid column name
    208: C.SCHEMA,  # invalid object name
    209: C.SCHEMA,  # ambiguous column name
    229: C.PERMISSION,  # permission denied on object
    230: C.PERMISSION,  # permission denied on column
    233: C.CONNECTION,  # no process is on the other end of the pipe
    245: C.DATA,  # conversion failed
    262: C.PERMISSION,  # permission denied in database
    515: C.INTEGRITY,  # cannot insert NULL
    547: C.INTEGRITY,  # constraint conflict (foreign key, check)
    701: C.RESOURCE,  # insufficient system memory
    1105: C.RESOURCE,  # filegroup full
    1204: C.RESOURCE,  # cannot obtain a lock resource
    1205: C.DEADLOCK,  # deadlock victim
    1222: C.LOCK_TIMEOUT,  # lock request time out period exceeded
    2601: C.INTEGRITY,  # duplicate key in unique index
    2627: C.INTEGRITY,  # unique or primary key constraint violation
    2628: C.DATA,  # string or binary data would be truncated
    2714: C.SCHEMA,  # object already exists
    3429: C.COMMIT_UNKNOWN,  # recovery could not determine the outcome of a transaction
    3906: C.READ_ONLY,  # database is read-only
    3960: C.SERIALIZATION,  # snapshot isolation update conflict
    3961: C.SERIALIZATION,  # snapshot isolation: object modified by DDL
    4060: C.CONNECTION,  # cannot open database requested by the login
    4221: C.CONNECTION,  # login to read-secondary failed (long wait)
    8114: C.DATA,  # error converting data type
    8115: C.DATA,  # arithmetic overflow
    8134: C.DATA,  # divide by zero
    8152: C.DATA,  # string or binary data would be truncated (legacy)
    8645: C.RESOURCE,  # timeout waiting for memory resources
    8651: C.RESOURCE,  # low memory condition
    9002: C.RESOURCE,  # transaction log full
    10053: C.CONNECTION,  # connection aborted by the host
    10054: C.CONNECTION,  # connection reset by peer
    10060: C.CONNECTION,  # connection attempt timed out
    10928: C.RESOURCE,  # resource limit reached (Azure)
    10929: C.RESOURCE,  # resource limit: minimum guarantee (Azure)
    11001: C.CONNECTION,  # host not found
    17197: C.CONNECTION,  # login failed due to timeout
    17889: C.RESOURCE,  # new connection rejected: session limit
    18401: C.CONNECTION,  # login failed: server in script upgrade mode
    18456: C.PERMISSION,  # login failed
    20003: C.CONNECTION,  # adaptive server connection timed out (FreeTDS)
    20004: C.CONNECTION,  # read from the server failed (FreeTDS)
    20006: C.CONNECTION,  # write to the server failed (FreeTDS)
    20009: C.CONNECTION,  # unable to connect (FreeTDS)
    20017: C.CONNECTION,  # unexpected EOF from the server (FreeTDS)
    20047: C.CONNECTION,  # DBPROCESS is dead or not enabled (FreeTDS)
    40197: C.CONNECTION,  # service error processing the request (Azure failover)
    40501: C.RESOURCE,  # service is currently busy (Azure)
    40613: C.CONNECTION,  # database not currently available (Azure failover)
    41301: C.SERIALIZATION,  # dependency failure (In-Memory OLTP)
    41302: C.SERIALIZATION,  # update conflict (In-Memory OLTP)
    41305: C.SERIALIZATION,  # repeatable read validation failure (In-Memory OLTP)
    41325: C.SERIALIZATION,  # serializable validation failure (In-Memory OLTP)
    41839: C.SERIALIZATION,  # too many commit dependencies (In-Memory OLTP)
    49918: C.RESOURCE,  # not enough resources to process the request (Azure)
    49919: C.RESOURCE,  # too many create or update operations (Azure)
    49920: C.RESOURCE,  # too many operations in progress (Azure)
}
"""SQL Server native error numbers, and FreeTDS client numbers as pymssql raises them."""

SQLSTATES: dict[str, C] = {
    "08": C.CONNECTION,  # connection exception (class)
    "08007": C.COMMIT_UNKNOWN,  # connection failure during transaction
    "08S01": C.CONNECTION,  # communication link failure
    "08S02": C.CONNECTION,  # physical connection is not usable
    "22": C.DATA,  # data exception (class)
    "23": C.INTEGRITY,  # integrity constraint violation (class)
    "28": C.PERMISSION,  # invalid authorization specification (class)
    "40001": C.SERIALIZATION,  # serialization failure
    "40003": C.COMMIT_UNKNOWN,  # statement completion unknown
    "42": C.SCHEMA,  # syntax error or access violation (class)
    "HY008": C.STATEMENT_TIMEOUT,  # operation canceled
    "HYT00": C.STATEMENT_TIMEOUT,  # timeout expired
    "HYT01": C.CONNECTION,  # connection timeout expired
}
"""ODBC SQLSTATEs (exact, or by two-character class) for errors without a known number."""


def category(number: int | None, sqlstate: str | None) -> C | None:
    """The category of native *number*, else of ODBC *sqlstate*; None if neither says."""
    if number is not None:
        found = NUMBERS.get(number)
        if found is not None:
            return found
    if sqlstate:
        return SQLSTATES.get(sqlstate) or SQLSTATES.get(sqlstate[:2])
    return None


def native_numbers(message: str) -> list[int]:
    """
    The native numbers pyodbc puts in *message*, first diagnostic record first.

    pyodbc formats each record as ``[SQLSTATE] text (native)``, the first one followed by
    `` (SQLFunction)`` and the others joined with ``"; "``; a number in parentheses that is
    not at such a place (a value quoted in the text) is not a native number.
    """
    numbers = []
    start = message.find("(")
    while start != -1:
        end = message.find(")", start)
        if end == -1:
            break
        token = message[start + 1 : end]
        rest = message[end + 1 : end + 4]
        if token.isdigit() and (rest in ("", "; [") or rest.startswith((" (", ";"))):
            numbers.append(int(token))
        start = message.find("(", start + 1)
    return numbers
