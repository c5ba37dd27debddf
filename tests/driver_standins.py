"""
Stand-ins for pyodbc and python-oracledb, which are not installed here (no server either).

They mirror the real drivers' exception classes (names, hierarchy, ``__module__``) and build
their exceptions the way the drivers do, so ``classify_error`` sees exactly what it would see
in production. Sources mirrored:

- pyodbc ``src/errors.cpp`` (mkleehammer/pyodbc): ``sql_state_mapping`` picks the class from
  the SQLSTATE prefix (anything else is the base ``Error``); ``GetErrorFromHandle`` formats the
  diagnostic records as ``"[SQLSTATE] text (native) (SQLFunction)"``, further records appended
  as ``"; [SQLSTATE] text (native)"``, and raises ``cls(sqlstate, message)``. pyodbc's own
  errors (``RaiseErrorV``) are raised as ``cls(message, sqlstate)`` instead. The classes come
  from ``src/pyodbcmodule.cpp`` (PEP 249 tree under ``Error``, ``Warning`` apart).
- python-oracledb ``src/oracledb/exceptions.py`` (the PEP 249 tree) and
  ``src/oracledb/errors.py``: ``_Error(message, context, isrecoverable, iswarning, code,
  offset)`` computes ``full_code`` from the message prefix, turns the ORA codes of
  ``ERR_ORACLE_ERROR_XREF`` that mean a dead connection into ``DPY-4011`` (keeping ``code``),
  marks them and ``ERR_RECOVERABLE_ERROR_CODES`` as recoverable, picks the exception class
  (``IntegrityError`` / ``OperationalError`` lists, else ``DatabaseError``) and is raised as
  ``exc_type(error)``, so ``args[0]`` is the ``_Error``. cx_Oracle 8 builds the same
  ``_Error`` without ``full_code``.
"""

from __future__ import annotations

# -- pyodbc ---------------------------------------------------------------------------------


class PyodbcError(Exception):
    """``pyodbc.Error``."""


class PyodbcWarning(Exception):
    """``pyodbc.Warning``."""


class PyodbcInterfaceError(PyodbcError):
    """``pyodbc.InterfaceError``."""


class PyodbcDatabaseError(PyodbcError):
    """``pyodbc.DatabaseError``."""


class PyodbcDataError(PyodbcDatabaseError):
    """``pyodbc.DataError``."""


class PyodbcOperationalError(PyodbcDatabaseError):
    """``pyodbc.OperationalError``."""


class PyodbcIntegrityError(PyodbcDatabaseError):
    """``pyodbc.IntegrityError``."""


class PyodbcInternalError(PyodbcDatabaseError):
    """``pyodbc.InternalError``."""


class PyodbcProgrammingError(PyodbcDatabaseError):
    """``pyodbc.ProgrammingError``."""


class PyodbcNotSupportedError(PyodbcDatabaseError):
    """``pyodbc.NotSupportedError``."""


_PYODBC = {
    "Error": PyodbcError,
    "Warning": PyodbcWarning,
    "InterfaceError": PyodbcInterfaceError,
    "DatabaseError": PyodbcDatabaseError,
    "DataError": PyodbcDataError,
    "OperationalError": PyodbcOperationalError,
    "IntegrityError": PyodbcIntegrityError,
    "InternalError": PyodbcInternalError,
    "ProgrammingError": PyodbcProgrammingError,
    "NotSupportedError": PyodbcNotSupportedError,
}
for _name, _cls in _PYODBC.items():
    _cls.__module__ = "pyodbc"  # the C extension module's name
    _cls.__name__ = _cls.__qualname__ = _name

# errors.cpp sql_state_mapping, in its order (first prefix that matches wins).
_SQL_STATE_MAPPING = [
    ("01002", PyodbcOperationalError),
    ("08001", PyodbcOperationalError),
    ("08003", PyodbcOperationalError),
    ("08004", PyodbcOperationalError),
    ("08007", PyodbcOperationalError),
    ("08S01", PyodbcOperationalError),
    ("0A000", PyodbcNotSupportedError),
    ("28000", PyodbcInterfaceError),
    ("40002", PyodbcIntegrityError),
    ("22", PyodbcDataError),
    ("23", PyodbcIntegrityError),
    ("24", PyodbcProgrammingError),
    ("25", PyodbcProgrammingError),
    ("42", PyodbcProgrammingError),
    ("HY001", PyodbcOperationalError),
    ("HY014", PyodbcOperationalError),
    ("HYT00", PyodbcOperationalError),
    ("HYT01", PyodbcOperationalError),
    ("IM001", PyodbcInterfaceError),
    ("IM002", PyodbcInterfaceError),
    ("IM003", PyodbcInterfaceError),
]


def pyodbc_class(sqlstate: str) -> type[PyodbcError]:
    """``ExceptionFromSqlState``: the class pyodbc raises for *sqlstate*."""
    for prefix, cls in _SQL_STATE_MAPPING:
        if sqlstate.startswith(prefix):
            return cls
    return PyodbcError


def pyodbc_error(
    sqlstate: str,
    text: str,
    native: int,
    *more: tuple[str, str, int],
    function: str = "SQLExecDirectW",
) -> PyodbcError:
    """``GetErrorFromHandle``: the exception for one or more ODBC diagnostic records."""
    message = f"[{sqlstate}] {text} ({native}) ({function})"
    for state, more_text, more_native in more:
        message += f"; [{state}] {more_text} ({more_native})"
    return pyodbc_class(sqlstate)(sqlstate, message)


def pyodbc_own_error(cls: type[PyodbcError], message: str, sqlstate: str = "HY000") -> PyodbcError:
    """``RaiseErrorV``: an error pyodbc raises itself, ``args == (message, sqlstate)``."""
    return cls(message, sqlstate)


MSSQL_DRIVER = "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]"

# -- python-oracledb --------------------------------------------------------------------------


class OracleWarning(Exception):
    """``oracledb.Warning``."""


class OracleError(Exception):
    """``oracledb.Error``."""


class OracleDatabaseError(OracleError):
    """``oracledb.DatabaseError``."""


class OracleDataError(OracleDatabaseError):
    """``oracledb.DataError``."""


class OracleIntegrityError(OracleDatabaseError):
    """``oracledb.IntegrityError``."""


class OracleInterfaceError(OracleError):
    """``oracledb.InterfaceError``."""


class OracleInternalError(OracleDatabaseError):
    """``oracledb.InternalError``."""


class OracleNotSupportedError(OracleDatabaseError):
    """``oracledb.NotSupportedError``."""


class OracleOperationalError(OracleDatabaseError):
    """``oracledb.OperationalError``."""


class OracleProgrammingError(OracleDatabaseError):
    """``oracledb.ProgrammingError``."""


for _name, _cls in {
    "Warning": OracleWarning,
    "Error": OracleError,
    "DatabaseError": OracleDatabaseError,
    "DataError": OracleDataError,
    "IntegrityError": OracleIntegrityError,
    "InterfaceError": OracleInterfaceError,
    "InternalError": OracleInternalError,
    "NotSupportedError": OracleNotSupportedError,
    "OperationalError": OracleOperationalError,
    "ProgrammingError": OracleProgrammingError,
}.items():
    _cls.__module__ = "oracledb.exceptions"
    _cls.__name__ = _cls.__qualname__ = _name

# errors.py: ERR_ORACLE_ERROR_XREF entries that map to ERR_CONNECTION_CLOSED (DPY-4011).
_CONNECTION_CLOSED = {
    22, 28, 31, 45, 378, 600, 602, 603, 609, 1012, 1041, 1043, 1089, 1092, 2396, 3113, 3114,
    3122, 3135, 12153, 12537, 12547, 12570, 12583, 27146, 28511, 56600,
}  # fmt: skip
_INTEGRITY = {1, 1400, 1438, 2290, 2291, 2292, 21525, 40479}
_OPERATIONAL = {
    22, 378, 600, 602, 603, 604, 609, 1012, 1013, 1033, 1034, 1041, 1043, 1089, 1090, 1092,
    3111, 3113, 3114, 3122, 3135, 12153, 12203, 12500, 12571, 27146, 28511,
}  # fmt: skip
_RECOVERABLE = {376, 1033, 1034, 1090, 1115, 12514, 12571, 12757, 16456}
_DRIVER_CLASSES = {
    1: OracleInterfaceError,
    2: OracleProgrammingError,
    3: OracleNotSupportedError,
    4: OracleDatabaseError,
    5: OracleInternalError,
    6: OracleOperationalError,
    8: OracleDataError,
}


class OracleErrorInfo:
    """``oracledb.errors._Error``: what ``args[0]`` of every python-oracledb exception is."""

    def __init__(
        self,
        message: str | None = None,
        context: str | None = None,
        isrecoverable: bool = False,
        iswarning: bool = False,
        code: int = 0,
        offset: int = 0,
    ) -> None:
        self.message = message
        self.context = context
        self.isrecoverable = isrecoverable
        self.iswarning = iswarning
        self.code = code
        self.offset = offset
        self.is_session_dead = False
        self.full_code = ""
        self.exc_type: type[OracleError] = OracleDatabaseError
        self._make_adjustments()

    def _make_adjustments(self) -> None:
        if self.message is not None:
            pos = self.message.find(":")
            if pos > 0:
                self.full_code = self.message[:pos]
                if self.code != 0:
                    self.message += f"\nHelp: https://docs.oracle.com/error-help/db/ora-{self.code:05}/"
        if self.code in _CONNECTION_CLOSED:
            self.message = f"DPY-4011: the database or network closed the connection\n{self.message}"
            self.full_code = "DPY-4011"
        if self.full_code.startswith("DPY-"):
            number = int(self.full_code[4:])
            if number == 4011:
                self.is_session_dead = self.isrecoverable = True
            self.exc_type = _DRIVER_CLASSES[number // 1000]
        elif self.code != 0:
            if self.code in _RECOVERABLE:
                self.isrecoverable = True
            if self.code in _INTEGRITY:
                self.exc_type = OracleIntegrityError
            elif self.code in _OPERATIONAL:
                self.exc_type = OracleOperationalError

    def __str__(self) -> str:
        return str(self.message)


OracleErrorInfo.__module__ = "oracledb.errors"
OracleErrorInfo.__name__ = OracleErrorInfo.__qualname__ = "_Error"


def oracle_error(code: int, text: str) -> OracleError:
    """A database error as python-oracledb raises it: ``exc_type(_Error(...))``."""
    info = OracleErrorInfo(f"ORA-{code:05}: {text}", code=code)
    return info.exc_type(info)


def oracle_driver_error(number: int, text: str) -> OracleError:
    """A driver error (``DPY-nnnn``), as ``errors._raise_err`` builds it."""
    info = OracleErrorInfo(f"DPY-{number:04}: {text}")
    return info.exc_type(info)


class CxOracleErrorInfo:
    """cx_Oracle 8's ``_Error``: the same attributes but no ``full_code``."""

    def __init__(self, message: str, code: int, *, isrecoverable: bool = False) -> None:
        self.message = message
        self.code = code
        self.offset = 0
        self.context = ""
        self.isrecoverable = isrecoverable

    def __str__(self) -> str:
        return self.message


class CxOracleDatabaseError(Exception):
    """``cx_Oracle.DatabaseError``."""


CxOracleErrorInfo.__module__ = CxOracleDatabaseError.__module__ = "cx_Oracle"
CxOracleErrorInfo.__name__ = CxOracleErrorInfo.__qualname__ = "_Error"
CxOracleDatabaseError.__name__ = CxOracleDatabaseError.__qualname__ = "DatabaseError"
