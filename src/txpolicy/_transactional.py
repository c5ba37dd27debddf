"""
``transactional()``, ``attempts()``, ``current_session()`` and ``on_commit()``: the public face.

The bind is resolved once into an adapter (``_binds``) and the options into a binding
(``_scopes.Binding``); the sync or async shell (``_sync``, ``_async``) is picked when a function
is decorated, or by the class of the returned object for the context-manager and block forms.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

from . import _async, _sync
from ._binds import Propagation, ScopeSpec, normalize_isolation, resolve_bind
from ._context import UserContext
from ._exceptions import ConfigurationError, NoActiveTransaction
from ._hooks import HOOKS, ScopeHooks
from ._markers import CommitMarker, resolve_commit_marker
from ._policy import RetryPolicy
from ._scopes import (
    OWNER,
    Binding,
    Check,
    Run,
    Scope,
    find_outer,
    innermost,
    is_async_callable,
    transaction_of,
)
from ._scopes import top_of_stack as _top

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterator
    from types import TracebackType

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        async_sessionmaker,
    )
    from sqlalchemy.orm import Session, sessionmaker

    from ._database import AsyncDatabase, Database

__all__ = [
    "AsyncAttempt",
    "AsyncAttempts",
    "AsyncTransactional",
    "Attempt",
    "Attempts",
    "Transactional",
    "attempts",
    "current_session",
    "on_commit",
    "transactional",
]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S", bound="Session")
AS = TypeVar("AS", bound="AsyncSession")

_PROPAGATIONS = ("required", "nested", "requires_new")


# --- building a binding -----------------------------------------------------------------------


def _check_bool(name: str, value: object) -> bool:
    """Booleans only: ``read_only="no"`` must not silently mean True."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def _check_timeout(name: str, value: object) -> float | None:
    """``None`` or a positive, finite number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def _binding(
    bind: object,
    *,
    policy: RetryPolicy | None,
    isolation_level: str | None,
    read_only: bool,
    propagation: Propagation,
    idempotent: bool,
    user_context: UserContext | None,
    operation_type: str | None,
    lock_timeout: float | None,
    statement_timeout: float | None,
    verify: Callable[..., Any] | None = None,
    commit_marker: object = False,
    default_operation: str,
) -> Binding:
    """Validate every option, then resolve the bind; all errors surface here."""
    if policy is not None and not isinstance(policy, RetryPolicy):
        raise TypeError(f"policy must be a RetryPolicy or None, got {policy!r}")
    if propagation not in _PROPAGATIONS:
        raise ValueError(f"propagation must be one of {_PROPAGATIONS}, got {propagation!r}")
    if user_context is not None and not isinstance(user_context, UserContext):
        raise TypeError(f"user_context must be a UserContext or None, got {user_context!r}")
    if operation_type is not None and not isinstance(operation_type, str):
        raise TypeError(f"operation_type must be a string or None, got {operation_type!r}")
    marker = _check_commit_options(verify, commit_marker, read_only=read_only)
    spec = ScopeSpec(
        isolation_level=None if isolation_level is None else normalize_isolation(isolation_level),
        read_only=_check_bool("read_only", read_only),
        propagation=propagation,
        idempotent=_check_bool("idempotent", idempotent),
        user_context=user_context,
        operation_type=operation_type,
        lock_timeout=_check_timeout("lock_timeout", lock_timeout),
        statement_timeout=_check_timeout("statement_timeout", statement_timeout),
        verify=verify,
        commit_marker=marker,
    )
    adapter = resolve_bind(bind)
    if verify is not None and is_async_callable(verify) != adapter.is_async:
        if adapter.is_async:
            raise TypeError(f"verify must be a coroutine function on an async bind: {verify!r}")
        raise TypeError(f"verify must not be a coroutine function on a sync bind: {verify!r}")
    return Binding(adapter, spec, policy, operation_type or default_operation)


def _check_commit_options(
    verify: object, commit_marker: object, *, read_only: object
) -> CommitMarker | None:
    """
    ``verify=`` and ``commit_marker=``: what they are, that they are not both given.

    Raises:
        TypeError: *verify* is not callable or is a generator function; *commit_marker* is
            not a bool, key function or :class:`CommitMarker`.
        ConfigurationError: Both are given, or a marker in a read-only scope (it writes).
    """
    if verify is not None:
        if not callable(verify):
            raise TypeError(f"verify must be a callable or None, got {verify!r}")
        if inspect.isgeneratorfunction(verify) or inspect.isasyncgenfunction(verify):
            raise TypeError(f"verify must return a bool, not be a generator function: {verify!r}")
    marker = resolve_commit_marker(commit_marker)
    if marker is not None and verify is not None:
        raise ConfigurationError(
            "pass verify= or commit_marker=, not both: the marker settles the outcome by itself"
        )
    if marker is not None and read_only is True:
        raise ConfigurationError("commit_marker writes a row: it cannot go with read_only=True")
    return marker


def _session_signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    """
    *fn*'s signature without its first parameter (the session it is given).

    Raises:
        TypeError: *fn* cannot take the session as its first positional argument.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and some C callables have none
        return None
    params = list(signature.parameters.values())
    if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return signature
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(
            f"{fn!r} must take the session as its first positional parameter, "
            f"e.g. def f(session, ...)"
        )
    return signature.replace(parameters=params[1:])


def _check_function(fn: object, *, want_async: bool) -> None:
    """Reject what cannot run as a transaction body, at decoration time."""
    if not callable(fn):
        raise TypeError(f"transactional() decorates callables, got {fn!r}")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{fn!r} is a generator function; a transaction cannot stay open across yields"
        )
    is_async = is_async_callable(fn)
    if want_async and not is_async:
        raise TypeError(f"{fn!r} is not a coroutine function, but the bind is async")
    if not want_async and is_async:
        raise TypeError(f"{fn!r} is a coroutine function, but the bind is sync")


def _decorate(binding: Binding, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Pick the sync or async wrapper once; keep name, docstring and signature minus session."""
    _check_function(fn, want_async=binding.is_async)
    signature = _session_signature(fn)
    bound = binding.with_operation(getattr(fn, "__qualname__", None) or repr(fn))
    wrapper: Callable[..., Any]
    if binding.is_async:
        acall = _async.call

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await acall(bound, fn, args, kwargs)

    else:
        call = _sync.call

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return call(bound, fn, args, kwargs)

    functools.update_wrapper(wrapper, fn)
    if signature is not None:
        cast("Any", wrapper).__signature__ = signature
    cast("Any", wrapper).statistics = bound.stats  # see txpolicy.instrumentation.get_statistics
    return wrapper


# --- the objects transactional() returns ------------------------------------------------------


class Transactional(Generic[R]):
    """
    What :func:`transactional` returns for a sync bind: a decorator and a context manager.

    As a context manager it runs one attempt (commit on success, roll back and raise the
    classified error on failure); as a decorator it retries the whole call per its policy.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_binding",)

    def __init__(self, binding: Binding) -> None:
        self._binding = binding

    def __call__(self, fn: Callable[Concatenate[R, P], T], /) -> Callable[P, T]:
        """Decorate *fn*, whose first argument receives the session or connection."""
        return _decorate(self._binding, fn)

    def __enter__(self) -> R:
        binding = self._binding
        outer = find_outer(binding)
        if outer is not None:
            scope = _sync.enter_inside(binding, outer)
        else:
            hooks = ScopeHooks(binding.operation).enter() if HOOKS.scope else None
            try:
                check = _sync.start_check(binding, (), {}) if binding.checks else None
                scope = _sync.open_owner(binding, None, retry=False)
            except BaseException as exc:
                if hooks is not None:
                    hooks.exit(exc)
                raise
            scope.hooks = hooks
            if check is not None:
                scope.check = check
        resource: R = scope.resource
        return resource

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = _top(self._binding)
        outcome: Run | BaseException | None
        if scope.kind != OWNER:
            outcome = _sync.leave_inside(scope, exc)
        else:
            try:
                if exc is None:
                    outcome = _sync.complete(scope, retry=False)
                else:
                    outcome = _sync.failed(scope, exc, retry=False)
            except BaseException as error:
                if scope.hooks is not None:
                    scope.hooks.exit(error)
                raise
            if scope.hooks is not None:
                assert not isinstance(outcome, Run)
                scope.hooks.exit(outcome)  # the error that leaves the scope, or None
        assert not isinstance(outcome, Run)
        if outcome is not None and outcome is not exc:
            raise outcome


class AsyncTransactional(Generic[R]):
    """
    What :func:`transactional` returns for an async bind: a decorator and an async context manager.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_binding",)

    def __init__(self, binding: Binding) -> None:
        self._binding = binding

    def __call__(
        self, fn: Callable[Concatenate[R, P], Coroutine[Any, Any, T]], /
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate the coroutine function *fn*, whose first argument receives the session."""
        return _decorate(self._binding, fn)

    async def __aenter__(self) -> R:
        binding = self._binding
        outer = find_outer(binding)
        if outer is not None:
            scope = await _async.enter_inside(binding, outer)
        else:
            hooks = ScopeHooks(binding.operation).enter() if HOOKS.scope else None
            try:
                check = await _async.start_check(binding, (), {}) if binding.checks else None
                scope = await _async.open_owner(binding, None, retry=False)
            except BaseException as exc:
                if hooks is not None:
                    hooks.exit(exc)
                raise
            scope.hooks = hooks
            if check is not None:
                scope.check = check
        resource: R = scope.resource
        return resource

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = _top(self._binding)
        outcome: Run | BaseException | None
        if scope.kind != OWNER:
            outcome = await _async.leave_inside(scope, exc)
        else:
            try:
                if exc is None:
                    outcome = await _async.complete(scope, retry=False)
                else:
                    outcome = await _async.failed(scope, exc, retry=False)
            except BaseException as error:
                if scope.hooks is not None:
                    scope.hooks.exit(error)
                raise
            if scope.hooks is not None:
                assert not isinstance(outcome, Run)
                scope.hooks.exit(outcome)  # the error that leaves the scope, or None
        assert not isinstance(outcome, Run)
        if outcome is not None and outcome is not exc:
            raise outcome


# --- attempts() -------------------------------------------------------------------------------


class _AttemptBase:
    """State shared by :class:`Attempt` and :class:`AsyncAttempt`."""

    __slots__ = ("_binding", "_check", "_hooks", "_next", "_run", "_scope")

    def __init__(
        self,
        binding: Binding,
        run: Run | None,
        check: Check | None = None,
        hooks: ScopeHooks | None = None,
    ) -> None:
        self._binding = binding
        self._run = run
        self._scope: Scope | None = None
        self._next: Run | None = None
        self._check = check  # the block's Check, made by its first owner attempt
        self._hooks = hooks  # the block's scope hooks, entered by its first owner attempt

    def _start_hooks(self) -> None:
        """The first owner attempt of the block enters the scope hooks (when any)."""
        if self._run is None and HOOKS.scope:
            self._hooks = ScopeHooks(self._binding.operation).enter()

    def _end_hooks(self, error: BaseException | None) -> None:
        """The block is over (committed, or *error* leaves it): leave the scope hooks."""
        if self._hooks is not None:
            self._hooks.exit(error)

    @property
    def num(self) -> int:
        """The number of this attempt (1-based)."""
        if self._scope is not None:
            return self._scope.attempt
        return 1 if self._run is None else self._run.attempt

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.num} of {self._binding.operation}>"

    def _settled(self, outcome: Run | BaseException | None, exc: BaseException | None) -> bool:
        """Turn the outcome of the attempt into ``__exit__``'s answer (True: retry)."""
        if isinstance(outcome, Run):
            self._next = outcome
            return True
        self._end_hooks(outcome)
        if outcome is None:
            return False
        if outcome is exc:
            return False
        raise outcome


class Attempt(_AttemptBase, Generic[R]):
    """
    One attempt of a retrying block: ``with attempt as session: ...``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def __enter__(self) -> R:
        binding = self._binding
        outer = find_outer(binding)
        if outer is not None:
            scope = _sync.enter_inside(binding, outer)
        else:
            self._start_hooks()
            try:
                if binding.checks and self._check is None:
                    self._check = _sync.start_check(binding, (), {})
                scope = _sync.open_owner(binding, self._run, retry=True)
            except BaseException as exc:
                self._end_hooks(exc)
                raise
            if self._check is not None:
                scope.check = self._check
        self._scope = scope
        resource: R = scope.resource
        return resource

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        scope = self._scope
        assert scope is not None
        if scope.kind != OWNER:
            outcome: Run | BaseException | None = _sync.leave_inside(scope, exc)
        else:
            try:
                if exc is None:
                    outcome = _sync.complete(scope, retry=True)
                else:
                    outcome = _sync.failed(scope, exc, retry=True)
            except BaseException as error:
                self._end_hooks(error)
                raise
        return self._settled(outcome, exc)


class AsyncAttempt(_AttemptBase, Generic[R]):
    """
    One attempt of an async retrying block: ``async with attempt as session: ...``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    async def __aenter__(self) -> R:
        binding = self._binding
        outer = find_outer(binding)
        if outer is not None:
            scope = await _async.enter_inside(binding, outer)
        else:
            self._start_hooks()
            try:
                if binding.checks and self._check is None:
                    self._check = await _async.start_check(binding, (), {})
                scope = await _async.open_owner(binding, self._run, retry=True)
            except BaseException as exc:
                self._end_hooks(exc)
                raise
            if self._check is not None:
                scope.check = self._check
        self._scope = scope
        resource: R = scope.resource
        return resource

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        scope = self._scope
        assert scope is not None
        if scope.kind != OWNER:
            outcome: Run | BaseException | None = await _async.leave_inside(scope, exc)
        else:
            try:
                if exc is None:
                    outcome = await _async.complete(scope, retry=True)
                else:
                    outcome = await _async.failed(scope, exc, retry=True)
            except BaseException as error:
                self._end_hooks(error)
                raise
        return self._settled(outcome, exc)


class Attempts(Generic[R]):
    """
    What :func:`attempts` returns for a sync bind: iterate it for :class:`Attempt` objects.

    The loop ends after an attempt that committed; a failed attempt that the policy retries
    is swallowed by its ``with`` block and followed (after the wait) by the next one; when the
    policy gives up, the classified error leaves the ``with`` block.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_binding",)

    def __init__(self, binding: Binding) -> None:
        self._binding = binding

    def __iter__(self) -> Iterator[Attempt[R]]:
        last: Attempt[R] | None = None
        try:
            while True:
                if last is not None:
                    run = last._next
                    if run is None:
                        return
                    _sync.sleep(run)
                if last is None:
                    last = Attempt(self._binding, None)
                else:
                    last = Attempt(self._binding, last._next, last._check, last._hooks)
                yield last
        except BaseException as exc:  # the loop was left between attempts (GeneratorExit)
            if last is not None:
                last._end_hooks(exc)
            raise


class AsyncAttempts(Generic[R]):
    """
    What :func:`attempts` returns for an async bind: ``async for attempt in ...``.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_binding",)

    def __init__(self, binding: Binding) -> None:
        self._binding = binding

    def __aiter__(self) -> _AsyncAttemptIterator[R]:
        return _AsyncAttemptIterator(self._binding)


class _AsyncAttemptIterator(Generic[R]):
    """A plain async iterator (not an async generator: nothing to finalize on early exit)."""

    __slots__ = ("_binding", "_last")

    def __init__(self, binding: Binding) -> None:
        self._binding = binding
        self._last: AsyncAttempt[R] | None = None

    def __aiter__(self) -> _AsyncAttemptIterator[R]:
        return self

    async def __anext__(self) -> AsyncAttempt[R]:
        last = self._last
        if last is not None:
            run = last._next
            if run is None:
                raise StopAsyncIteration
            await _async.sleep(run)
        attempt: AsyncAttempt[R] = (
            AsyncAttempt(self._binding, None)
            if last is None
            else AsyncAttempt(self._binding, last._next, last._check, last._hooks)
        )
        self._last = attempt
        return attempt


# --- the public functions ---------------------------------------------------------------------

# The overloads type the forms by the bind; keep their keyword lists identical.


@overload
def transactional(
    bind: async_sessionmaker[AS],
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., Awaitable[bool]] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> AsyncTransactional[AS]: ...
@overload
def transactional(
    bind: sessionmaker[S],
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., bool] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> Transactional[S]: ...
@overload
def transactional(
    bind: AsyncEngine,
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., Awaitable[bool]] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> AsyncTransactional[AsyncConnection]: ...
@overload
def transactional(
    bind: Engine,
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., bool] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> Transactional[Connection]: ...
@overload
def transactional(
    bind: AsyncDatabase,
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., Awaitable[bool]] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> AsyncTransactional[AsyncSession]: ...
@overload
def transactional(
    bind: Database,
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., bool] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> Transactional[Session]: ...
def transactional(
    bind: object,
    /,
    *,
    policy: RetryPolicy | None = None,
    isolation_level: str | None = None,
    read_only: bool = False,
    propagation: Propagation = "required",
    idempotent: bool = False,
    user_context: UserContext | None = None,
    operation_type: str | None = None,
    lock_timeout: float | None = None,
    statement_timeout: float | None = None,
    verify: Callable[..., Any] | None = None,
    commit_marker: bool | CommitMarker | Callable[..., str] = False,
) -> Transactional[Any] | AsyncTransactional[Any]:
    """
    Run code in a database transaction that survives deadlocks, serialization failures & co.

    Three forms::

        @transactional(Session)                 # decorator: the whole call is retried
        def transfer(session, src, dst, amount): ...

        transfer(1, 2, 10)                      # the session is passed in by txpolicy

        with transactional(Session) as session:         # one attempt, no retry
            ...

        async with transactional(AsyncSession) as session:
            ...

    and the retrying block :func:`attempts`. A scope begins a transaction (with the isolation
    level, read-only mode and timeouts asked for), runs the body, and commits; on error it
    rolls back, classifies the error (:func:`classify_error`), and — decorator and
    :func:`attempts` only — retries the whole unit on a fresh session when the policy allows.
    What leaves a scope is the classified :class:`TransactionError`, raised from the exception
    as caught; non-database errors propagate unchanged and are never retried.

    Scopes on the same bind in the same thread or task compose according to *propagation*:
    ``"required"`` joins an active scope (same session, no commit and no retries of its own:
    only the owner retries, and it never commits after a joined scope failed);
    ``"nested"`` runs in a SAVEPOINT inside it, which contains its failure; ``"requires_new"``
    always owns a new session and transaction. Threads and tasks started inside a scope never
    join it.

    Args:
        bind: A ``sessionmaker`` / ``async_sessionmaker`` (the scope yields a ``Session`` /
            ``AsyncSession``), an ``Engine`` / ``AsyncEngine`` (yields a ``Connection`` /
            ``AsyncConnection``), or a ``Database`` / ``AsyncDatabase``.
        policy: How to retry; default: the bind's, else ``RetryPolicy()``.
        isolation_level: ``"SERIALIZABLE"``, ``"REPEATABLE READ"``, ``"READ COMMITTED"``,
            ``"READ UNCOMMITTED"`` or ``"SNAPSHOT"`` (case and separators are free).
        read_only: Declare the transaction read-only (PostgreSQL and MySQL enforce it).
            ``READ_ONLY`` errors are not retried in such a scope.
        propagation: ``"required"``, ``"nested"`` or ``"requires_new"``.
        idempotent: The body may safely run twice even if a COMMIT of unknown outcome went
            through: allows retrying ``COMMIT_UNKNOWN`` and connection losses during COMMIT.
        user_context: The :class:`UserContext` of this scope (Database binds apply it).
        operation_type: A name for logs, hooks and statistics; default: the decorated
            function's ``__qualname__``.
        lock_timeout: Seconds a statement may wait for a lock (PostgreSQL ``SET LOCAL
            lock_timeout``; MySQL ``innodb_lock_wait_timeout``, whole seconds).
        statement_timeout: Seconds a statement may run (PostgreSQL ``SET LOCAL
            statement_timeout``; MariaDB ``max_statement_time``; MySQL
            ``max_execution_time``, SELECT only).
        verify: Says whether a COMMIT of unknown outcome (the connection was lost while
            committing) happened: ``verify(session, *args, **kwargs) -> bool`` for the
            decorator (the decorated call's arguments), ``verify(session) -> bool`` for the
            ``with`` and :func:`attempts` forms; a coroutine function on async binds. It runs
            in a fresh transaction (a new session on the same bind, one attempt, rolled back
            afterwards). ``True``: the call returns normally without running the body again
            (the decorator returns what the body returned in the attempt whose COMMIT was
            lost, and the ``on_commit`` callbacks run). ``False``: the attempt failed for
            sure and is retried as a connection failure, as the policy allows. If *verify*
            raises (or returns a non-bool), the :class:`CommitUnknownError` is raised with
            that error as its ``__context__``.
        commit_marker: ``True``, a key function or a :class:`CommitMarker`: txpolicy writes
            an idempotency key to its marker table in the same transaction, right before
            COMMIT, and after a COMMIT of unknown outcome looks for it in a fresh
            transaction: found, the call returns as with ``verify`` → ``True``; absent, it is
            retried. The key function gets the call's arguments (none for the ``with`` and
            :func:`attempts` forms); by default each call gets a random key. Clean up with
            :func:`purge_commit_markers`. Not with *verify*, nor in a read-only scope.

    Returns:
        An object that is a decorator and a (sync or async, per the bind) context manager.

    Raises:
        TypeError: An unsupported bind or a wrongly typed option (a *verify* that is not
            callable, or is sync on an async bind or the reverse); at decoration: a
            non-callable, a generator function, a sync function on an async bind or the
            reverse.
        ValueError: An unknown *propagation* or isolation level, a non-positive timeout,
            *verify* together with *commit_marker*, or *commit_marker* with *read_only*
            (:class:`ConfigurationError`).

    .. versionadded:: 0.1.0
    """
    binding = _binding(
        bind,
        policy=policy,
        isolation_level=isolation_level,
        read_only=read_only,
        propagation=propagation,
        idempotent=idempotent,
        user_context=user_context,
        operation_type=operation_type,
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
        verify=verify,
        commit_marker=commit_marker,
        default_operation="transactional",
    )
    if binding.is_async:
        return AsyncTransactional(binding)
    return Transactional(binding)


@overload
def attempts(
    bind: async_sessionmaker[AS],
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., Awaitable[bool]] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> AsyncAttempts[AS]: ...
@overload
def attempts(
    bind: sessionmaker[S],
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., bool] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> Attempts[S]: ...
@overload
def attempts(
    bind: AsyncEngine,
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., Awaitable[bool]] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> AsyncAttempts[AsyncConnection]: ...
@overload
def attempts(
    bind: Engine,
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., bool] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> Attempts[Connection]: ...
@overload
def attempts(
    bind: AsyncDatabase,
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., Awaitable[bool]] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> AsyncAttempts[AsyncSession]: ...
@overload
def attempts(
    bind: Database,
    /,
    *,
    policy: RetryPolicy | None = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    propagation: Propagation = ...,
    idempotent: bool = ...,
    user_context: UserContext | None = ...,
    operation_type: str | None = ...,
    lock_timeout: float | None = ...,
    statement_timeout: float | None = ...,
    verify: Callable[..., bool] | None = ...,
    commit_marker: bool | CommitMarker | Callable[..., str] = ...,
) -> Attempts[Session]: ...
def attempts(
    bind: object,
    /,
    *,
    policy: RetryPolicy | None = None,
    isolation_level: str | None = None,
    read_only: bool = False,
    propagation: Propagation = "required",
    idempotent: bool = False,
    user_context: UserContext | None = None,
    operation_type: str | None = None,
    lock_timeout: float | None = None,
    statement_timeout: float | None = None,
    verify: Callable[..., Any] | None = None,
    commit_marker: bool | CommitMarker | Callable[..., str] = False,
) -> Attempts[Any] | AsyncAttempts[Any]:
    """
    A retrying block: the body of the ``with`` runs once per attempt, in a fresh transaction.

    ::

        for attempt in attempts(Session):
            with attempt as session:
                session.execute(...)

        async for attempt in attempts(AsyncSession):
            async with attempt as session:
                await session.execute(...)

    Takes the same arguments as :func:`transactional` and follows the same rules; inside an
    active scope on the same bind it runs once, joined (or in a savepoint). A *verify*
    callable gets the session only, and a ``commit_marker`` key function no arguments; the
    marker key is made once for the whole block, when its first attempt begins.

    Returns:
        An iterable (sync bind) or async iterable (async bind) of attempts.

    .. versionadded:: 0.1.0
    """
    binding = _binding(
        bind,
        policy=policy,
        isolation_level=isolation_level,
        read_only=read_only,
        propagation=propagation,
        idempotent=idempotent,
        user_context=user_context,
        operation_type=operation_type,
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
        verify=verify,
        commit_marker=commit_marker,
        default_operation="attempts",
    )
    if binding.is_async:
        return AsyncAttempts(binding)
    return Attempts(binding)


def current_session() -> Any:
    """
    The Session, AsyncSession, Connection or AsyncConnection of the innermost active scope.

    Only scopes opened by the current thread or asyncio task count.

    Raises:
        NoActiveTransaction: Outside any scope.

    .. versionadded:: 0.1.0
    """
    scope = innermost()
    if scope is None:
        raise NoActiveTransaction("no txpolicy transaction is active in this thread or task")
    return scope.resource


def on_commit(callback: Callable[[], object]) -> None:
    """
    Run *callback* once, after the innermost scope's transaction commits for good.

    Callbacks run in registration order, after the owning scope's final commit and before the
    decorated call returns (or the ``with`` block is left). Those registered by failed
    attempts, or in savepoint scopes that rolled back, are dropped. A callback that raises is
    logged and affects neither the result nor the other callbacks. In async scopes, async
    callbacks are awaited.

    Args:
        callback: A function of no arguments (or a coroutine function, in async scopes).

    Raises:
        NoActiveTransaction: Outside any scope.
        TypeError: *callback* is not callable, or is async while the scope is sync.

    .. versionadded:: 0.1.0
    """
    if not callable(callback):
        raise TypeError(f"on_commit() needs a callable, got {callback!r}")
    scope = innermost()
    if scope is None:
        raise NoActiveTransaction("on_commit() called outside a txpolicy transaction")
    if not scope.binding.is_async and is_async_callable(callback):
        raise TypeError(f"{callback!r} is async, but the transaction is sync; it would never run")
    txn = transaction_of(scope)
    if txn.callbacks is None:
        txn.callbacks = []
    txn.callbacks.append(callback)
