"""
PostgreSQL: SQLSTATE to category, with a class-prefix fallback.

Source of the codes and condition names: Appendix A, "PostgreSQL Error Codes",
https://www.postgresql.org/docs/current/errcodes-appendix.html
(``src/backend/utils/errcodes.txt`` in the server tree).

Codes not listed fall back on their two-character class (:data:`CLASSES`), the way
psycopg's ``errors.py`` picks a DB-API base class with ``_base_exc_map``: an unknown
code still lands sensibly. Class ``40`` deliberately falls back on ``UNKNOWN``:
``40003`` taught us that "retry the whole class" can apply a transaction twice.
"""

from __future__ import annotations

from .._exceptions import ErrorCategory as C

SQLSTATES: dict[str, C] = {
    "08000": C.CONNECTION,  # connection_exception
    "08001": C.CONNECTION,  # sqlclient_unable_to_establish_sqlconnection
    "08003": C.CONNECTION,  # connection_does_not_exist
    "08004": C.CONNECTION,  # sqlserver_rejected_establishment_of_sqlconnection
    "08006": C.CONNECTION,  # connection_failure
    "08007": C.COMMIT_UNKNOWN,  # transaction_resolution_unknown
    "08P01": C.CONNECTION,  # protocol_violation
    "0A000": C.SCHEMA,  # feature_not_supported
    "21000": C.DATA,  # cardinality_violation
    "22000": C.DATA,  # data_exception
    "22001": C.DATA,  # string_data_right_truncation
    "22003": C.DATA,  # numeric_value_out_of_range
    "22004": C.DATA,  # null_value_not_allowed
    "22007": C.DATA,  # invalid_datetime_format
    "22008": C.DATA,  # datetime_field_overflow
    "22012": C.DATA,  # division_by_zero
    "22021": C.DATA,  # character_not_in_repertoire
    "22023": C.DATA,  # invalid_parameter_value
    "22P02": C.DATA,  # invalid_text_representation
    "23000": C.INTEGRITY,  # integrity_constraint_violation
    "23001": C.INTEGRITY,  # restrict_violation
    "23502": C.INTEGRITY,  # not_null_violation
    "23503": C.INTEGRITY,  # foreign_key_violation
    "23505": C.INTEGRITY,  # unique_violation
    "23514": C.INTEGRITY,  # check_violation
    "23P01": C.INTEGRITY,  # exclusion_violation
    "24000": C.UNKNOWN,  # invalid_cursor_state
    "25000": C.UNKNOWN,  # invalid_transaction_state
    "25001": C.UNKNOWN,  # active_sql_transaction
    "25006": C.READ_ONLY,  # read_only_sql_transaction
    "25P01": C.UNKNOWN,  # no_active_sql_transaction
    "25P02": C.UNKNOWN,  # in_failed_sql_transaction
    "25P03": C.CONNECTION,  # idle_in_transaction_session_timeout
    "25P04": C.STATEMENT_TIMEOUT,  # transaction_timeout
    "26000": C.SCHEMA,  # invalid_sql_statement_name
    "28000": C.PERMISSION,  # invalid_authorization_specification
    "28P01": C.PERMISSION,  # invalid_password
    "2BP01": C.SCHEMA,  # dependent_objects_still_exist
    "2D000": C.UNKNOWN,  # invalid_transaction_termination
    "3B000": C.UNKNOWN,  # savepoint_exception
    "3B001": C.UNKNOWN,  # invalid_savepoint_specification
    "3D000": C.SCHEMA,  # invalid_catalog_name
    "3F000": C.SCHEMA,  # invalid_schema_name
    "40000": C.SERIALIZATION,  # transaction_rollback
    "40001": C.SERIALIZATION,  # serialization_failure
    "40002": C.INTEGRITY,  # transaction_integrity_constraint_violation
    "40003": C.COMMIT_UNKNOWN,  # statement_completion_unknown
    "40P01": C.DEADLOCK,  # deadlock_detected
    "42501": C.PERMISSION,  # insufficient_privilege
    "42601": C.SCHEMA,  # syntax_error
    "42703": C.SCHEMA,  # undefined_column
    "42704": C.SCHEMA,  # undefined_object
    "42710": C.SCHEMA,  # duplicate_object
    "42804": C.SCHEMA,  # datatype_mismatch
    "42883": C.SCHEMA,  # undefined_function
    "42P01": C.SCHEMA,  # undefined_table
    "42P05": C.SCHEMA,  # duplicate_prepared_statement
    "42P07": C.SCHEMA,  # duplicate_table
    "44000": C.INTEGRITY,  # with_check_option_violation
    "53000": C.RESOURCE,  # insufficient_resources
    "53100": C.RESOURCE,  # disk_full
    "53200": C.RESOURCE,  # out_of_memory
    "53300": C.RESOURCE,  # too_many_connections
    "53400": C.RESOURCE,  # configuration_limit_exceeded
    "54000": C.UNKNOWN,  # program_limit_exceeded
    "55000": C.UNKNOWN,  # object_not_in_prerequisite_state
    "55006": C.LOCK_TIMEOUT,  # object_in_use
    "55P03": C.LOCK_TIMEOUT,  # lock_not_available
    "57000": C.CONNECTION,  # operator_intervention
    "57014": C.STATEMENT_TIMEOUT,  # query_canceled
    "57P01": C.CONNECTION,  # admin_shutdown
    "57P02": C.CONNECTION,  # crash_shutdown
    "57P03": C.CONNECTION,  # cannot_connect_now
    "57P04": C.CONNECTION,  # database_dropped
    "57P05": C.CONNECTION,  # idle_session_timeout
    "58000": C.RESOURCE,  # system_error
    "58030": C.RESOURCE,  # io_error
    "72000": C.SERIALIZATION,  # snapshot_too_old
    "P0001": C.UNKNOWN,  # raise_exception
    "P0002": C.DATA,  # no_data_found
    "P0003": C.DATA,  # too_many_rows
    "P0004": C.UNKNOWN,  # assert_failure
    "XX000": C.UNKNOWN,  # internal_error
    "XX001": C.UNKNOWN,  # data_corrupted
    "XX002": C.UNKNOWN,  # index_corrupted
}
"""Every SQLSTATE that matters for a retry decision (PostgreSQL 17)."""

CLASSES: dict[str, C] = {
    "08": C.CONNECTION,  # connection_exception
    "0A": C.SCHEMA,  # feature_not_supported
    "21": C.DATA,  # cardinality_violation
    "22": C.DATA,  # data_exception
    "23": C.INTEGRITY,  # integrity_constraint_violation
    "25": C.UNKNOWN,  # invalid_transaction_state
    "26": C.SCHEMA,  # invalid_sql_statement_name
    "28": C.PERMISSION,  # invalid_authorization_specification
    "2B": C.SCHEMA,  # dependent_privilege_descriptors_still_exist
    "3D": C.SCHEMA,  # invalid_catalog_name
    "3F": C.SCHEMA,  # invalid_schema_name
    "40": C.UNKNOWN,  # transaction_rollback (unknown members: outcome not known to be safe)
    "42": C.SCHEMA,  # syntax_error_or_access_rule_violation
    "44": C.INTEGRITY,  # with_check_option_violation
    "53": C.RESOURCE,  # insufficient_resources
    "54": C.UNKNOWN,  # program_limit_exceeded
    "55": C.UNKNOWN,  # object_not_in_prerequisite_state
    "57": C.CONNECTION,  # operator_intervention
    "58": C.RESOURCE,  # system_error
}
"""Fallback by SQLSTATE class (the first two characters) for codes missing above."""


ENDED_WHILE_IDLE = frozenset({"25P03", "57P05"})
"""
Connection ends the server only decides while the session waits for the client.

Raised in reply to COMMIT, they still prove the transaction was rolled back: the server
ended it before the COMMIT arrived, so they are no unknown outcome.
"""


def category(sqlstate: str) -> C:
    """The category of *sqlstate*: the exact code first, then its class, else UNKNOWN."""
    found = SQLSTATES.get(sqlstate)
    if found is not None:
        return found
    return CLASSES.get(sqlstate[:2], C.UNKNOWN)
