"""
Oracle: ORA numbers and python-oracledb's own codes to category.

Sources: "Database Error Messages", https://docs.oracle.com/en/error-help/db/ ;
python-oracledb "Error Handling" (``isrecoverable``, ``full_code``),
https://python-oracledb.readthedocs.io/en/latest/user_guide/exception_handling.html ;
``src/oracledb/errors.py`` (the ORA codes mapped to ``DPY-4011``, "the database or
network closed the connection").

python-oracledb and cx_Oracle put an ``_Error`` object in ``args[0]`` with ``.code``
(the ORA number, 0 for driver errors), ``.message`` and ``.isrecoverable``;
python-oracledb adds ``.full_code`` (``"ORA-00060"``, ``"DPY-4011"``). Oracle rolls back
only the failed *statement* on a deadlock (ORA-00060); txpolicy still retries the whole
transaction, after rolling it back.
"""

from __future__ import annotations

from .._exceptions import ErrorCategory as C

ORA_CODES: dict[int, C] = {
    1: C.INTEGRITY,  # unique constraint violated
    18: C.RESOURCE,  # maximum number of sessions exceeded
    20: C.RESOURCE,  # maximum number of processes exceeded
    22: C.CONNECTION,  # invalid session ID
    28: C.CONNECTION,  # your session has been killed
    31: C.CONNECTION,  # session marked for kill
    45: C.CONNECTION,  # session terminated (idle)
    54: C.LOCK_TIMEOUT,  # resource busy and acquire with NOWAIT
    60: C.DEADLOCK,  # deadlock detected
    378: C.CONNECTION,  # buffer pools cannot be created
    600: C.CONNECTION,  # internal error (python-oracledb: session dead)
    602: C.CONNECTION,  # internal programming exception
    603: C.CONNECTION,  # server session terminated by fatal error
    609: C.CONNECTION,  # could not attach to incoming connection
    900: C.SCHEMA,  # invalid SQL statement
    903: C.SCHEMA,  # invalid table name
    904: C.SCHEMA,  # invalid identifier
    917: C.SCHEMA,  # missing comma
    936: C.SCHEMA,  # missing expression
    942: C.SCHEMA,  # table or view does not exist
    1012: C.CONNECTION,  # not logged on
    1013: C.STATEMENT_TIMEOUT,  # user requested cancel of current operation
    1017: C.PERMISSION,  # invalid username/password
    1031: C.PERMISSION,  # insufficient privileges
    1033: C.CONNECTION,  # initialization or shutdown in progress
    1034: C.CONNECTION,  # ORACLE not available
    1041: C.CONNECTION,  # internal error, hostdef extension does not exist
    1043: C.CONNECTION,  # user side memory corruption
    1089: C.CONNECTION,  # immediate shutdown in progress
    1090: C.CONNECTION,  # shutdown in progress
    1092: C.CONNECTION,  # ORACLE instance terminated
    1400: C.INTEGRITY,  # cannot insert NULL
    1401: C.DATA,  # inserted value too large for column
    1407: C.INTEGRITY,  # cannot update to NULL
    1438: C.DATA,  # value larger than specified precision
    1555: C.SERIALIZATION,  # snapshot too old
    1653: C.RESOURCE,  # unable to extend table
    1654: C.RESOURCE,  # unable to extend index
    1722: C.DATA,  # invalid number
    2290: C.INTEGRITY,  # check constraint violated
    2291: C.INTEGRITY,  # integrity constraint violated - parent key not found
    2292: C.INTEGRITY,  # integrity constraint violated - child record found
    2396: C.CONNECTION,  # exceeded maximum idle time
    3113: C.CONNECTION,  # end-of-file on communication channel
    3114: C.CONNECTION,  # not connected to ORACLE
    3122: C.CONNECTION,  # attempt to close ORACLE-side window on user side
    3135: C.CONNECTION,  # connection lost contact
    4030: C.RESOURCE,  # out of process memory
    4031: C.RESOURCE,  # unable to allocate shared memory
    8177: C.SERIALIZATION,  # can't serialize access for this transaction
    12153: C.CONNECTION,  # TNS:not connected
    12514: C.CONNECTION,  # listener does not know of service
    12516: C.RESOURCE,  # listener could not find available handler
    12519: C.RESOURCE,  # no appropriate service handler found
    12520: C.RESOURCE,  # listener could not find handler for server type
    12537: C.CONNECTION,  # TNS:connection closed
    12541: C.CONNECTION,  # TNS:no listener
    12547: C.CONNECTION,  # TNS:lost contact
    12570: C.CONNECTION,  # TNS:packet reader failure
    12571: C.CONNECTION,  # TNS:packet writer failure
    12583: C.CONNECTION,  # TNS:no reader
    12757: C.CONNECTION,  # instance does not currently know of service
    12899: C.DATA,  # value too large for column
    16000: C.READ_ONLY,  # database open for read-only access
    16456: C.CONNECTION,  # switchover to standby in progress
    27146: C.CONNECTION,  # post/wait initialization failed
    28000: C.PERMISSION,  # the account is locked
    24457: C.RESOURCE,  # OCISessionGet() could not find a free session (pool)
    24459: C.RESOURCE,  # OCISessionGet() timed out waiting for the pool to grow
    24496: C.RESOURCE,  # OCISessionGet() timed out waiting for a free connection
    28511: C.CONNECTION,  # lost RPC connection to heterogeneous remote agent
    30006: C.LOCK_TIMEOUT,  # resource busy; acquire with WAIT timeout expired
    56600: C.CONNECTION,  # an illegal OCI function call was issued
}
"""ORA numbers (``_Error.code``)."""

ENDED_WHILE_IDLE = frozenset({2396})
"""Connection ends decided while the session was idle: a definite rollback even at COMMIT."""

DRIVER_CODES: dict[str, C] = {
    "DPI-1010": C.CONNECTION,  # not connected
    "DPI-1067": C.STATEMENT_TIMEOUT,  # call timeout exceeded
    "DPI-1080": C.CONNECTION,  # connection was closed by ORA-%d
    "DPY-1001": C.CONNECTION,  # not connected to database
    "DPY-4005": C.RESOURCE,  # timed out waiting for the connection pool
    "DPY-4011": C.CONNECTION,  # the database or network closed the connection
    "DPY-4024": C.STATEMENT_TIMEOUT,  # call timeout exceeded
    "DPY-4033": C.CONNECTION,  # exceeded the maximum idle time
    "DPY-6000": C.CONNECTION,  # listener refused the connection
    "DPY-6005": C.CONNECTION,  # cannot connect to database
}
"""python-oracledb's own codes (``_Error.full_code``) for errors without an ORA number."""


def category(code: int | None, full_code: str | None) -> C | None:
    """The category of ORA *code*, else of driver *full_code*; None if neither says."""
    if code:
        found = ORA_CODES.get(code)
        if found is not None:
            return found
    if full_code:
        return DRIVER_CODES.get(full_code)
    return None


def parse_code(text: str) -> tuple[int | None, str | None]:
    """``(ora_number, full_code)`` read from a message or code such as ``"ORA-00060: ..."``."""
    prefix = text[:9].upper()
    if prefix[:4] in ("ORA-", "DPY-", "DPI-") and prefix[4:9].isdigit():
        number = int(prefix[4:9])
        return (number if prefix[:4] == "ORA-" else None), prefix
    if prefix[:4] in ("DPY-", "DPI-") and prefix[4:8].isdigit():
        return None, prefix[:8]
    return None, None
