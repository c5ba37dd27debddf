"""
The sync shell: the I/O of Session and Connection scopes, and nothing else.

Every decision comes from ``_scopes`` / ``_decide``; the async twin is ``_async.py`` (the same
functions with ``await``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from ._binds import Statement, execution_options
from ._config import CONFIG
from ._scopes import (
    JOINED,
    SCOPES,
    Binding,
    Run,
    Scope,
    after_failure,
    after_savepoint,
    callback_failed,
    chain,
    classify,
    closed,
    contain,
    dialect_of,
    find_outer,
    has_timeouts,
    invalidates,
    log_cleanup_error,
    merge_callbacks,
    new_inside,
    new_owner,
    owner_statements,
    pop,
    push,
    record_failure,
    savepoint_statements,
    succeeded,
    text_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

T = TypeVar("T")


def execute_all(resource: Any, statements: Iterable[Statement]) -> None:
    """Run statements with bind parameters (never string-built SQL)."""
    for statement in statements:
        resource.execute(text_for(statement.sql), dict(statement.params))


def sleep(run: Run) -> None:
    """Wait before the next attempt, unless testing mode is on."""
    if run.delay > 0 and not CONFIG.testing:
        time.sleep(run.delay)
        run.backoff.slept(run.delay)


# --- owner scopes ---------------------------------------------------------------------------


def begin(scope: Scope) -> None:
    """Open the attempt's Session / Connection and apply the scope's options."""
    binding = scope.binding
    resource = scope.resource = binding.adapter.open(binding.spec, scope.context)
    if binding.plain:
        return
    options = execution_options(dialect_of(resource, binding.yields).name, binding.spec)
    if binding.yields == "session":
        connection = resource.connection(execution_options=options)
    else:
        if options:
            resource.execution_options(**options)
        connection = resource
    execute_all(resource, owner_statements(scope, connection.dialect))


def commit(scope: Scope) -> None:
    """Commit, unless a joined scope failed (``classify`` tells flush errors from COMMIT's)."""
    if scope.failure is not None:
        raise scope.failure
    resource = scope.resource
    if scope.teardown:
        execute_all(resource, scope.teardown)
    scope.during_commit = True
    resource.commit()


def abort(scope: Scope, classified: Any) -> None:
    """Roll back (or invalidate) and close; cleanup errors never mask the original error."""
    try:
        resource = scope.resource
        if resource is None:
            return
        invalidate = invalidates(classified)
        if not invalidate and scope.teardown and not scope.during_commit:
            try:
                execute_all(resource, scope.teardown)
            except Exception:
                log_cleanup_error("teardown")
                invalidate = True
        try:
            if invalidate:
                resource.invalidate()
            else:
                resource.rollback()
        except Exception:
            log_cleanup_error("rollback")
            try:
                resource.invalidate()
            except Exception:
                log_cleanup_error("invalidate")
        try:
            resource.close()
        except Exception:
            log_cleanup_error("close")
        closed(scope, resource, failed=True)
    finally:
        pop(scope)


def finish(scope: Scope) -> None:
    """After the final commit: close, pop, account, then run the on_commit callbacks."""
    resource = scope.resource
    try:
        resource.close()
    except Exception:
        log_cleanup_error("close after commit")
    if not scope.binding.plain_adapter:
        closed(scope, resource, failed=False)
    pop(scope)
    succeeded(scope)
    if scope.callbacks:
        for callback in scope.callbacks:
            try:
                callback()
            except Exception:  # noqa: PERF203 - each one is isolated from the others
                callback_failed(callback)


def failed(scope: Scope, error: BaseException, *, retry: bool) -> Run | BaseException:
    """Clean up a failed attempt; a Run to retry, or the exception to raise (chained)."""
    classified = classify(scope, error)
    abort(scope, classified)
    return after_failure(scope, error, classified, retry=retry)


def complete(scope: Scope, *, retry: bool) -> Run | BaseException | None:
    """Commit and finish; ``None`` when done, else what :func:`failed` says."""
    try:
        commit(scope)
    except BaseException as exc:
        return failed(scope, exc, retry=retry)
    finish(scope)
    return None


def open_owner(binding: Binding, run: Run | None, *, retry: bool) -> Scope:
    """Begin an owner attempt; a failure to begin (a refused connection) is a failed attempt."""
    while True:
        scope = new_owner(binding, run)
        try:
            begin(scope)
        except BaseException as exc:
            outcome = failed(scope, exc, retry=retry)
        else:
            return scope
        if not isinstance(outcome, Run):
            raise outcome
        run = outcome
        sleep(run)


def call(
    binding: Binding, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    """The decorator's shell: run *fn* in a transaction, retrying the whole call."""
    if SCOPES.get():
        outer = find_outer(binding)
        if outer is not None:
            return call_inside(binding, outer, fn, args, kwargs)
    run = None
    while True:
        scope = open_owner(binding, run, retry=True)
        try:
            result = fn(scope.resource, *args, **kwargs)
            commit(scope)
        except BaseException as exc:
            outcome = failed(scope, exc, retry=True)
        else:
            finish(scope)
            return result
        if not isinstance(outcome, Run):
            raise outcome
        run = outcome
        sleep(run)


# --- joined and savepoint scopes ------------------------------------------------------------


def enter_inside(binding: Binding, outer: Scope) -> Scope:
    """Join *outer*'s transaction, or open a SAVEPOINT in it; checks run before anything."""
    scope = new_inside(binding, outer)
    if scope.kind != JOINED:
        resource = scope.resource
        try:
            scope.savepoint = resource.begin_nested()
            if has_timeouts(binding.spec):
                dialect = dialect_of(resource, binding.yields)
                execute_all(resource, savepoint_statements(scope, dialect))
        except BaseException as exc:
            if scope.savepoint is not None:
                try:
                    scope.savepoint.rollback()
                except Exception:
                    log_cleanup_error("rollback to savepoint")
            classified = classify(scope, exc)
            raised = exc if classified is None else classified
            record_failure(outer, raised)
            if raised is exc:
                raise
            raise raised from exc
    push(scope)
    return scope


def leave_inside(scope: Scope, error: BaseException | None) -> BaseException | None:
    """End a joined or savepoint scope; the exception to raise (chained), if any."""
    try:
        if scope.kind == JOINED:
            if error is None:
                return None
            classified = classify(scope, error)
            raised = error if classified is None else classified
            record_failure(scope, raised)
            return chain(raised, error)
        resource = scope.resource
        if error is None and scope.failure is None:
            try:
                scope.savepoint.commit()
                if has_timeouts(scope.binding.spec):
                    dialect = dialect_of(resource, scope.binding.yields)
                    execute_all(resource, after_savepoint(scope, dialect, rolled_back=False))
            except BaseException as exc:
                error = exc
            else:
                merge_callbacks(scope)
                return None
        if error is None:
            error = scope.failure
            assert error is not None
        classified = classify(scope, error)
        raised = error if classified is None else classified
        try:
            scope.savepoint.rollback()
            dialect = dialect_of(resource, scope.binding.yields)
            execute_all(resource, after_savepoint(scope, dialect, rolled_back=True))
        except Exception:
            log_cleanup_error("rollback to savepoint")
            assert scope.parent is not None
            record_failure(scope.parent, raised)
        else:
            contain(scope, raised, classified)
        return chain(raised, error)
    finally:
        pop(scope)


def call_inside(
    binding: Binding,
    outer: Scope,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """The decorator inside an active scope: once, never retried here."""
    scope = enter_inside(binding, outer)
    try:
        result = fn(scope.resource, *args, **kwargs)
    except BaseException as exc:
        raised = leave_inside(scope, exc)
        assert raised is not None
        if raised is exc:
            raise
        raise raised from exc
    raised = leave_inside(scope, None)
    if raised is not None:
        raise raised
    return result
