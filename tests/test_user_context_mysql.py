"""MariaDB / MySQL: the user context travels in session variables, cleared when the transaction ends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from txpolicy import Database, UserContext, user_context

VARIABLES = sa.text("SELECT @txpolicy_user_id, @txpolicy_tenant_id, CONNECTION_ID()")


@pytest.fixture
def db(mysql_url):
    """A one-connection database, so every session reuses the same server connection."""
    database = Database(mysql_url, pool_size=1, max_overflow=0)
    yield database
    database.close()


def raw_variables(database: Database, names=("txpolicy_user_id", "txpolicy_tenant_id")):
    """Read the variables on the pooled connection without going through txpolicy."""
    engine = database._adapter("primary").engine
    columns = ", ".join(f"@{name}" for name in names)
    with engine.connect() as connection:
        return tuple(connection.execute(sa.text(f"SELECT {columns}, CONNECTION_ID()")).one())


def test_variables_set_inside_and_cleared_after(db):
    """Inside the transaction the variables hold the context; the same connection has NULL after."""
    with db.get_session(user_context=UserContext(42, "acme")) as session:
        inside = tuple(session.execute(VARIABLES).one())

    after = raw_variables(db)

    assert ("42", "acme") == inside[:2]
    assert (None, None, inside[2]) == after


def test_missing_tenant_is_null(db):
    """A context without a tenant sets the tenant variable to NULL."""
    with user_context(UserContext("u7")), db.get_session() as session:
        inside = tuple(session.execute(VARIABLES).one())

    assert ("u7", None) == inside[:2]


def test_variables_cleared_after_a_failed_transaction(db):
    """A body that raises still leaves the connection without the context."""
    with pytest.raises(RuntimeError):
        with db.get_session(user_context=UserContext("u1")) as session:
            connection_id = session.execute(VARIABLES).one()[2]
            raise RuntimeError("boom")

    assert (None, None, connection_id) == raw_variables(db)


def test_stray_session_variable_is_overwritten(db):
    """A value left on the connection by someone else is replaced by the (empty) context."""
    engine = db._adapter("primary").engine
    with engine.connect() as connection:
        connection.execute(sa.text("SET @txpolicy_user_id = 'intruder'"))
    with db.get_session() as session:
        inside = tuple(session.execute(VARIABLES).one())

    assert (None, None) == inside[:2]


def test_values_are_bind_parameters(db):
    """Quotes in ids reach the server as data, not SQL."""
    nasty = "x', @txpolicy_tenant_id = 'pwned"
    with db.get_session(user_context=UserContext(nasty)) as session:
        inside = tuple(session.execute(VARIABLES).one())

    assert (nasty, None) == inside[:2]


def test_custom_prefix_names_the_variables(mysql_url):
    """settings_prefix changes the variable names to @<prefix>_user_id / @<prefix>_tenant_id."""
    with Database(mysql_url, pool_size=1, max_overflow=0, settings_prefix="myapp") as db:
        with db.get_session(user_context=UserContext("u", "t")) as session:
            inside = tuple(
                session.execute(sa.text("SELECT @myapp_user_id, @myapp_tenant_id")).one()
            )
        after = raw_variables(db, ("myapp_user_id", "myapp_tenant_id"))

    assert ("u", "t") == inside
    assert (None, None) == after[:2]
