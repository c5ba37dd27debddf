"""
The async shell: the I/O of AsyncSession and AsyncConnection scopes, and nothing else.

The same functions as ``_sync.py`` with ``await``; every decision comes from ``_scopes`` /
``_decide``. Cleanup after a failure is shielded from cancellation, as SQLAlchemy's own
``AsyncSession.__aexit__`` does, so a cancelled task still returns its connection.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, TypeVar

from . import _markers
from ._config import CONFIG
from ._hooks import HOOKS, ScopeHooks
from ._scopes import (
    JOINED,
    SCOPES,
    Binding,
    Check,
    Run,
    Scope,
    after_check,
    after_failure,
    after_savepoint,
    callback_failed,
    chain,
    check_binding,
    classify,
    closed,
    contain,
    dialect_of,
    escalation_statements,
    find_outer,
    fixed_for,
    has_timeouts,
    invalidates,
    log_cleanup_error,
    marker_statements,
    merge_callbacks,
    must_pass_gate,
    needs_check,
    new_inside,
    new_owner,
    owner_statements,
    pop,
    probe_statement,
    push,
    record_failure,
    savepoint_statements,
    succeeded,
    text_for,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ._binds import Statement

T = TypeVar("T")


async def execute_all(resource: Any, statements: Iterable[Statement]) -> None:
    """Run statements with bind parameters (never string-built SQL)."""
    for statement in statements:
        await resource.execute(text_for(statement.sql), dict(statement.params))


async def sleep(run: Run) -> None:
    """Wait before the next attempt; in testing mode only count the wait (see ``Run.skip``)."""
    if run.delay > 0:
        if CONFIG.testing:
            run.skip()
        else:
            await asyncio.sleep(run.delay)
            run.backoff.slept(run.delay)


# --- owner scopes ---------------------------------------------------------------------------


async def begin(scope: Scope) -> None:
    """Open the attempt's AsyncSession / AsyncConnection and apply the scope's options."""
    binding = scope.binding
    resource = scope.resource = binding.adapter.open(binding.spec, scope.context)
    if binding.yields == "connection" and resource.sync_connection is None:
        await resource.start()
    if binding.quiet and not scope.escalated:
        return
    # An AsyncSession checks its connection out with the first statement, unless the options
    # must go on it first (or the escalation lock must come first).
    dialect = binding.dialect or dialect_of(resource, binding.yields)
    fixed = fixed_for(binding, dialect)
    if scope.escalated or fixed.options is not None:
        dialect = await connect(scope)
        if scope.escalated:
            dialect = await escalate(scope, dialect)
    if fixed.statements:
        statements = owner_statements(scope, dialect)
        if statements:
            await execute_all(resource, statements)


async def connect(scope: Scope) -> Any:
    """Check the connection out with the scope's options (a Session's again after ROLLBACK)."""
    binding, resource = scope.binding, scope.resource
    options = fixed_for(binding, dialect_of(resource, binding.yields)).options
    if binding.yields == "session":
        return (await resource.connection(execution_options=options)).dialect
    if options:
        await resource.execution_options(**options)
    return resource.dialect


async def escalate(scope: Scope, dialect: Any) -> Any:
    """Take the escalation lock first thing, waiting for it in a transaction thrown away."""
    lock = escalation_statements(scope, dialect)
    if lock is None:
        return dialect
    acquire, wait = lock[0].acquire, lock[1]
    resource = scope.resource
    while not (await resource.execute(text_for(acquire.sql), dict(acquire.params))).scalar():
        await execute_all(resource, wait)
        await resource.rollback()
        dialect = await connect(scope)
    return dialect


async def commit(scope: Scope) -> None:
    """Commit, unless a joined scope failed (``classify`` tells flush errors from COMMIT's)."""
    if scope.failure is not None:
        raise scope.failure
    resource = scope.resource
    if scope.check is not None:
        await execute_all(resource, marker_statements(scope))
    if scope.teardown:
        await execute_all(resource, scope.teardown)
    scope.during_commit = True
    await resource.commit()


async def _cleanup(scope: Scope, resource: Any, classified: Any) -> None:
    """Roll back (or invalidate) and close; cleanup errors never mask the original error."""
    invalidate = invalidates(classified)
    if not invalidate and scope.teardown and not scope.during_commit:
        try:
            await execute_all(resource, scope.teardown)
        except Exception:
            log_cleanup_error("teardown")
            invalidate = True
    try:
        if invalidate:
            await resource.invalidate()
        else:
            await resource.rollback()
    except Exception:
        log_cleanup_error("rollback")
        try:
            await resource.invalidate()
        except Exception:
            log_cleanup_error("invalidate")
    try:
        await resource.close()
    except Exception:
        log_cleanup_error("close")
    closed(scope, resource, failed=True)


async def abort(scope: Scope, classified: Any) -> None:
    """Shielded cleanup of a failed attempt; the scope leaves the stack in this task."""
    try:
        if scope.resource is not None:
            await asyncio.shield(_cleanup(scope, scope.resource, classified))
    finally:
        pop(scope)


async def finish(scope: Scope) -> None:
    """After the final commit: close, pop, account, then run the on_commit callbacks."""
    resource = scope.resource
    try:
        await resource.close()
    except Exception:
        log_cleanup_error("close after commit")
    if not scope.binding.plain_adapter:
        closed(scope, resource, failed=False)
    pop(scope)
    succeeded(scope)
    if scope.callbacks:
        await run_callbacks(scope)


async def run_callbacks(scope: Scope) -> None:
    """The on_commit callbacks of a committed transaction, each isolated from the others."""
    for callback in scope.callbacks or ():
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: PERF203 - each one is isolated from the others
            callback_failed(callback)


async def failed(scope: Scope, error: BaseException, *, retry: bool) -> Run | BaseException:
    """Clean up a failed attempt; a Run to retry, or the exception to raise (chained)."""
    classified = classify(scope, error)
    await abort(scope, classified)
    return after_failure(scope, error, classified, retry=retry)


async def complete(scope: Scope, *, retry: bool) -> Run | BaseException | None:
    """Commit and finish; ``None`` when done, else what :func:`failed` says."""
    try:
        await commit(scope)
    except BaseException as exc:
        return await settle(scope, exc, retry=retry)
    await finish(scope)
    return None


async def open_owner(binding: Binding, run: Run | None, *, retry: bool) -> Scope:
    """Begin an owner attempt; a failure to begin (a refused connection) is a failed attempt."""
    while True:
        scope = new_owner(binding, run)
        try:
            if binding.gate is not None and must_pass_gate(scope):
                scope.gate_token = await binding.gate.aenter(escalated=scope.escalated)
            await begin(scope)
        except BaseException as exc:
            outcome = await failed(scope, exc, retry=retry)
        else:
            return scope
        if not isinstance(outcome, Run):
            raise outcome
        run = outcome
        await sleep(run)


async def call(
    binding: Binding,
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """The decorator's shell: run *fn* in a transaction, retrying the whole call."""
    if SCOPES.get():
        outer = find_outer(binding)
        if outer is not None:
            return await call_inside(binding, outer, fn, args, kwargs)
    if HOOKS.scope:
        # Sync context managers: what they make current (contextvars) stays with this task.
        with ScopeHooks(binding.operation):
            return await call_owner(binding, fn, args, kwargs)
    return await call_owner(binding, fn, args, kwargs)


async def call_owner(
    binding: Binding,
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """The attempts of a call that owns its transaction."""
    check = await start_check(binding, args, kwargs) if binding.checks else None
    run = None
    while True:
        scope = await open_owner(binding, run, retry=True)
        if check is not None:
            scope.check = check
        try:
            result = await fn(scope.resource, *args, **kwargs)
            await commit(scope)
        except BaseException as exc:
            outcome = await settle(scope, exc, retry=True)
            if outcome is None:  # the lost COMMIT happened: the body's result stands
                return result
        else:
            await finish(scope)
            return result
        if not isinstance(outcome, Run):
            raise outcome
        run = outcome
        await sleep(run)


# --- joined and savepoint scopes ------------------------------------------------------------


async def enter_inside(binding: Binding, outer: Scope) -> Scope:
    """Join *outer*'s transaction, or open a SAVEPOINT in it; checks run before anything."""
    scope = new_inside(binding, outer)
    if scope.kind != JOINED:
        resource = scope.resource
        try:
            scope.savepoint = await resource.begin_nested()
            if has_timeouts(binding.spec):
                dialect = dialect_of(resource, binding.yields)
                await execute_all(resource, savepoint_statements(scope, dialect))
        except BaseException as exc:
            if scope.savepoint is not None:
                try:
                    await scope.savepoint.rollback()
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


async def leave_inside(scope: Scope, error: BaseException | None) -> BaseException | None:
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
                await scope.savepoint.commit()
                if has_timeouts(scope.binding.spec):
                    dialect = dialect_of(resource, scope.binding.yields)
                    await execute_all(resource, after_savepoint(scope, dialect, rolled_back=False))
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
            await scope.savepoint.rollback()
            dialect = dialect_of(resource, scope.binding.yields)
            await execute_all(resource, after_savepoint(scope, dialect, rolled_back=True))
        except Exception:
            log_cleanup_error("rollback to savepoint")
            assert scope.parent is not None
            record_failure(scope.parent, raised)
        else:
            contain(scope, raised, classified)
        return chain(raised, error)
    finally:
        pop(scope)


async def call_inside(
    binding: Binding,
    outer: Scope,
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    """The decorator inside an active scope: once, never retried here."""
    scope = await enter_inside(binding, outer)
    try:
        result = await fn(scope.resource, *args, **kwargs)
    except BaseException as exc:
        raised = await leave_inside(scope, exc)
        assert raised is not None
        if raised is exc:
            raise
        raise raised from exc
    raised = await leave_inside(scope, None)
    if raised is not None:
        raise raised
    return result


# --- a COMMIT of unknown outcome ------------------------------------------------------------


async def start_check(binding: Binding, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Check:
    """The call's Check (its marker key made); the marker table created if need be."""
    check = Check(binding, args, kwargs)
    if check.table is not None:
        await _markers.aprepare(binding.adapter, check.table)
    return check


async def settle(scope: Scope, error: BaseException, *, retry: bool) -> Run | BaseException | None:
    """:func:`failed` for an attempt that reached COMMIT: ``None`` if its lost COMMIT happened."""
    classified = classify(scope, error)
    await abort(scope, classified)
    if classified is None or not needs_check(scope, classified):
        return after_failure(scope, error, classified, retry=retry)
    outcome = after_check(scope, error, classified, await ask(scope), retry=retry)
    if outcome is None and scope.callbacks:
        await run_callbacks(scope)
    return outcome


async def ask(scope: Scope) -> object:
    """
    Run the commit check in a fresh transaction, always rolled back.

    Returns:
        The answer of ``verify`` (or of the marker probe), or the exception the check raised.
    """
    check = scope.check
    assert check is not None
    probe = new_owner(check_binding(scope.binding), None)
    try:
        await begin(probe)
        resource = probe.resource
        if check.key is None:
            assert check.verify is not None
            answer: object = await check.verify(resource, *check.args, **check.kwargs)
        else:
            dialect = dialect_of(resource, probe.binding.yields)
            statement = probe_statement(check, dialect.name)
            result = await resource.execute(text_for(statement.sql), dict(statement.params))
            answer = _markers.probe_found_key(result.rowcount)
    except Exception as exc:
        await abort(probe, classify(probe, exc))
        return exc
    except BaseException:
        await abort(probe, None)
        raise
    await abort(probe, None)  # rolled back: the check changes nothing
    return answer
