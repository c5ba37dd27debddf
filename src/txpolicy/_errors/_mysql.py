"""
MySQL and MariaDB: server and client error numbers to category.

Sources: MySQL "Server Error Message Reference" and "Client Error Message Reference",
https://dev.mysql.com/doc/mysql-errors/8.0/en/server-error-reference.html ,
https://dev.mysql.com/doc/mysql-errors/8.0/en/client-error-reference.html ;
MariaDB "MariaDB Error Codes", https://mariadb.com/kb/en/mariadb-error-codes/ .

PyMySQL and mysqlclient put the number in ``args[0]`` (PyMySQL also keeps the server's
SQLSTATE in ``.sqlstate``). Numbers 2000-2999 are raised by the client library itself and
mean the connection is unusable; unknown numbers fall back on the SQLSTATE, then on the
DB-API class the driver chose.
"""

from __future__ import annotations

from .._exceptions import ErrorCategory as C

ERRNOS: dict[int, C] = {
    149: C.DEADLOCK,  # HA_ERR_LOCK_DEADLOCK (Galera certification conflict)
    1020: C.SERIALIZATION,  # ER_CHECKREAD (MariaDB snapshot isolation)
    1021: C.RESOURCE,  # ER_DISK_FULL
    1022: C.INTEGRITY,  # ER_DUP_KEY
    1028: C.STATEMENT_TIMEOUT,  # ER_FILSORT_ABORT
    1037: C.RESOURCE,  # ER_OUTOFMEMORY
    1038: C.RESOURCE,  # ER_OUT_OF_SORTMEMORY
    1040: C.RESOURCE,  # ER_CON_COUNT_ERROR
    1041: C.RESOURCE,  # ER_OUT_OF_RESOURCES
    1042: C.CONNECTION,  # ER_BAD_HOST_ERROR
    1043: C.CONNECTION,  # ER_HANDSHAKE_ERROR
    1044: C.PERMISSION,  # ER_DBACCESS_DENIED_ERROR
    1045: C.PERMISSION,  # ER_ACCESS_DENIED_ERROR
    1048: C.INTEGRITY,  # ER_BAD_NULL_ERROR
    1049: C.SCHEMA,  # ER_BAD_DB_ERROR
    1050: C.SCHEMA,  # ER_TABLE_EXISTS_ERROR
    1051: C.SCHEMA,  # ER_BAD_TABLE_ERROR
    1052: C.SCHEMA,  # ER_NON_UNIQ_ERROR
    1053: C.CONNECTION,  # ER_SERVER_SHUTDOWN
    1054: C.SCHEMA,  # ER_BAD_FIELD_ERROR
    1060: C.SCHEMA,  # ER_DUP_FIELDNAME
    1061: C.SCHEMA,  # ER_DUP_KEYNAME
    1062: C.INTEGRITY,  # ER_DUP_ENTRY
    1064: C.SCHEMA,  # ER_PARSE_ERROR
    1091: C.SCHEMA,  # ER_CANT_DROP_FIELD_OR_KEY
    1109: C.SCHEMA,  # ER_UNKNOWN_TABLE
    1114: C.RESOURCE,  # ER_RECORD_FILE_FULL
    1135: C.RESOURCE,  # ER_CANT_CREATE_THREAD
    1136: C.SCHEMA,  # ER_WRONG_VALUE_COUNT_ON_ROW
    1142: C.PERMISSION,  # ER_TABLEACCESS_DENIED_ERROR
    1143: C.PERMISSION,  # ER_COLUMNACCESS_DENIED_ERROR
    1146: C.SCHEMA,  # ER_NO_SUCH_TABLE
    1149: C.SCHEMA,  # ER_SYNTAX_ERROR
    1152: C.CONNECTION,  # ER_ABORTING_CONNECTION
    1158: C.CONNECTION,  # ER_NET_READ_ERROR
    1159: C.CONNECTION,  # ER_NET_READ_INTERRUPTED
    1160: C.CONNECTION,  # ER_NET_ERROR_ON_WRITE
    1161: C.CONNECTION,  # ER_NET_WRITE_INTERRUPTED
    1169: C.INTEGRITY,  # ER_DUP_UNIQUE
    1180: C.COMMIT_UNKNOWN,  # ER_ERROR_DURING_COMMIT
    1184: C.CONNECTION,  # ER_NEW_ABORTING_CONNECTION
    1203: C.RESOURCE,  # ER_TOO_MANY_USER_CONNECTIONS
    1205: C.LOCK_TIMEOUT,  # ER_LOCK_WAIT_TIMEOUT
    1206: C.RESOURCE,  # ER_LOCK_TABLE_FULL
    1213: C.DEADLOCK,  # ER_LOCK_DEADLOCK
    1215: C.SCHEMA,  # ER_CANNOT_ADD_FOREIGN
    1216: C.INTEGRITY,  # ER_NO_REFERENCED_ROW
    1217: C.INTEGRITY,  # ER_ROW_IS_REFERENCED
    1226: C.RESOURCE,  # ER_USER_LIMIT_REACHED
    1227: C.PERMISSION,  # ER_SPECIFIC_ACCESS_DENIED_ERROR
    1263: C.DATA,  # ER_WARN_NULL_TO_NOTNULL
    1264: C.DATA,  # ER_WARN_DATA_OUT_OF_RANGE
    1265: C.DATA,  # WARN_DATA_TRUNCATED
    1290: C.READ_ONLY,  # ER_OPTION_PREVENTS_STATEMENT
    1292: C.DATA,  # ER_TRUNCATED_WRONG_VALUE
    1305: C.SCHEMA,  # ER_SP_DOES_NOT_EXIST
    1317: C.STATEMENT_TIMEOUT,  # ER_QUERY_INTERRUPTED
    1364: C.INTEGRITY,  # ER_NO_DEFAULT_FOR_FIELD
    1365: C.DATA,  # ER_DIVISION_BY_ZERO
    1366: C.DATA,  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    1367: C.DATA,  # ER_ILLEGAL_VALUE_FOR_TYPE
    1370: C.PERMISSION,  # ER_PROCACCESS_DENIED_ERROR
    1406: C.DATA,  # ER_DATA_TOO_LONG
    1411: C.DATA,  # ER_WRONG_VALUE_FOR_TYPE
    1412: C.SERIALIZATION,  # ER_TABLE_DEF_CHANGED ("please retry transaction")
    1441: C.DATA,  # ER_DATETIME_FUNCTION_OVERFLOW
    1451: C.INTEGRITY,  # ER_ROW_IS_REFERENCED_2
    1452: C.INTEGRITY,  # ER_NO_REFERENCED_ROW_2
    1557: C.INTEGRITY,  # ER_FOREIGN_DUPLICATE_KEY
    1586: C.INTEGRITY,  # ER_DUP_ENTRY_WITH_KEY_NAME
    1614: C.DEADLOCK,  # ER_XA_RBDEADLOCK
    1637: C.RESOURCE,  # ER_TOO_MANY_CONCURRENT_TRXS
    1690: C.DATA,  # ER_DATA_OUT_OF_RANGE
    1698: C.PERMISSION,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    1792: C.READ_ONLY,  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    1836: C.READ_ONLY,  # ER_READ_ONLY_MODE
    1927: C.CONNECTION,  # ER_CONNECTION_KILLED (MariaDB)
    1969: C.STATEMENT_TIMEOUT,  # ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
    2002: C.CONNECTION,  # CR_CONNECTION_ERROR
    2003: C.CONNECTION,  # CR_CONN_HOST_ERROR
    2005: C.CONNECTION,  # CR_UNKNOWN_HOST
    2006: C.CONNECTION,  # CR_SERVER_GONE_ERROR
    2013: C.CONNECTION,  # CR_SERVER_LOST
    2014: C.CONNECTION,  # CR_COMMANDS_OUT_OF_SYNC
    2026: C.CONNECTION,  # CR_SSL_CONNECTION_ERROR
    2045: C.CONNECTION,  # CR_SHARED_MEMORY_CONNECT_ABANDONED_ERROR
    2048: C.CONNECTION,  # CR_INVALID_CONN_HANDLE
    2055: C.CONNECTION,  # CR_SERVER_LOST_EXTENDED
    3024: C.STATEMENT_TIMEOUT,  # ER_QUERY_TIMEOUT (MySQL max_execution_time)
    3058: C.DEADLOCK,  # ER_USER_LOCK_DEADLOCK
    3101: C.SERIALIZATION,  # ER_TRANSACTION_ROLLBACK_DURING_COMMIT (Group Replication)
    3118: C.PERMISSION,  # ER_ACCOUNT_HAS_BEEN_LOCKED
    3140: C.DATA,  # ER_INVALID_JSON_TEXT
    3572: C.LOCK_TIMEOUT,  # ER_LOCK_NOWAIT
    3819: C.INTEGRITY,  # ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
    4025: C.INTEGRITY,  # ER_CONSTRAINT_FAILED (MariaDB; PyMySQL raises OperationalError)
    4031: C.CONNECTION,  # ER_CLIENT_INTERACTION_TIMEOUT
}
"""Every error number that matters for a retry decision."""

SQLSTATES: dict[str, C] = {
    "08": C.CONNECTION,  # connection exception
    "08S01": C.CONNECTION,  # communication link failure
    "22": C.DATA,  # data exception
    "23": C.INTEGRITY,  # integrity constraint violation
    "25006": C.READ_ONLY,  # read-only SQL transaction
    "28": C.PERMISSION,  # invalid authorization specification
    "40001": C.SERIALIZATION,  # serialization failure
    "42": C.SCHEMA,  # syntax error or access rule violation
    "70100": C.STATEMENT_TIMEOUT,  # query interrupted
}
"""Fallback for unknown numbers on the server's SQLSTATE: exact code, then class."""

ENDED_WHILE_IDLE = frozenset({4031})
"""Connection ends decided while the session was idle: a definite rollback even at COMMIT."""

CLIENT_ERRORS = range(2000, 3000)
"""Numbers the client library raises itself (CR_*): the connection is unusable."""


def category(errno: int, sqlstate: str | None = None) -> C | None:
    """The category of *errno*, or of *sqlstate* for an unknown number; None if neither says."""
    found = ERRNOS.get(errno)
    if found is not None:
        return found
    if errno in CLIENT_ERRORS:
        return C.CONNECTION
    if sqlstate:
        return SQLSTATES.get(sqlstate) or SQLSTATES.get(sqlstate[:2])
    return None
