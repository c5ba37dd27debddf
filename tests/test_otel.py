"""OpenTelemetry: a span per transaction, an event per retry, counters; real failures only."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

import txpolicy
from txpolicy import ErrorCategory, RetryPolicy
from txpolicy._bench import BenchTarget
from txpolicy._hooks import HOOKS
from txpolicy.instrumentation import (
    disable_opentelemetry,
    enable_opentelemetry,
    is_opentelemetry_enabled,
)
from txpolicy.testing import inject_fault, set_testing


class Telemetry:
    """In-memory span exporter and metric reader behind txpolicy's instrumentation."""

    def __init__(self):
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name=None):
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def points(self, metric):
        """{frozenset(attributes): value} of one instrument (sum or histogram count)."""
        out = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        for point in m.data.data_points:
                            value = getattr(point, "value", None)
                            out[frozenset(point.attributes.items())] = (
                                point.count if value is None else value
                            )
        return out

    def total(self, metric, **attributes):
        wanted = set(attributes.items())
        return sum(v for k, v in self.points(metric).items() if wanted <= set(k))


@pytest.fixture
def telemetry():
    """txpolicy's OpenTelemetry instrumentation, enabled for one test."""
    t = Telemetry()
    assert enable_opentelemetry(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    yield t
    disable_opentelemetry()
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


@pytest.fixture
def pg_target(postgres_url):
    """A table whose writes can be made to fail once with a real serialization failure."""
    target = BenchTarget(postgres_url)
    yield target
    target.close()


@pytest.fixture
def sqlite_factory(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'otel.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY)")
    yield sessionmaker(engine)
    engine.dispose()


def test_one_span_per_committed_call(telemetry, sqlite_factory):
    """A call that commits at once is one span: no events, outcome committed, 1 attempt."""

    @txpolicy.transactional(sqlite_factory)
    def add(session, item_id):
        session.execute(sa.text("INSERT INTO item (id) VALUES (:id)"), {"id": item_id})

    add(1)
    add(2)

    spans = telemetry.spans()
    assert 2 == len(spans)
    span = spans[0]
    assert add.__qualname__ == span.name
    assert {
        "txpolicy.operation": add.__qualname__,
        "txpolicy.outcome": "committed",
        "txpolicy.attempts": 1,
    } == dict(span.attributes)
    assert () == tuple(span.events)
    assert trace.StatusCode.UNSET == span.status.status_code
    assert span.start_time < span.end_time
    assert 2 == telemetry.total(
        "txpolicy.transaction.attempts", **{"txpolicy.outcome": "committed"}
    )
    assert 2 == telemetry.total("txpolicy.transaction.duration")
    assert 0 == telemetry.total("txpolicy.transaction.retries")


def test_nothing_but_the_span_is_added_to_the_path_where_nothing_fails(telemetry):
    """Enabled, the instrumentation registers a scope hook and the failure hooks only: a
    transaction that commits at once builds no attempt record (its span says it committed)."""
    assert (1, 1, 1, ()) == (
        len(HOOKS.scope),
        len(HOOKS.retry),
        len(HOOKS.give_up),
        HOOKS.success,
    )


def test_a_real_serialization_failure_is_a_retry_event(telemetry, pg_target):
    """A real 40001 retried once: one span with one event carrying category, SQLSTATE,
    attempt and wait; the retry counter counts it by category."""
    write = txpolicy.transactional(pg_target.retry_factory)(pg_target.write)
    pg_target.arm()

    with set_testing():
        write()

    [span] = telemetry.spans()
    assert 2 == span.attributes["txpolicy.attempts"]
    assert "committed" == span.attributes["txpolicy.outcome"]
    [event] = span.events
    assert "txpolicy.retry" == event.name
    assert "serialization" == event.attributes["txpolicy.category"]
    assert "40001" == event.attributes["txpolicy.sqlstate"]
    assert 1 == event.attributes["txpolicy.attempt"]
    assert 0 <= event.attributes["txpolicy.wait"] <= RetryPolicy().wait_initial
    assert span.start_time <= event.timestamp <= span.end_time
    assert 1 == telemetry.total(
        "txpolicy.transaction.retries", **{"txpolicy.category": "serialization"}
    )
    assert 2 == telemetry.total("txpolicy.transaction.attempts")


def test_give_up_sets_an_error_status(telemetry, pg_target):
    """A policy with one attempt gives up on the real failure: the span is an error with the
    exception recorded, and the give-up is counted with its category and reason."""
    write = txpolicy.transactional(pg_target.retry_factory, policy=RetryPolicy(attempts=1))(
        pg_target.write
    )
    pg_target.arm()

    with pytest.raises(txpolicy.SerializationError):
        write()

    [span] = telemetry.spans()
    assert trace.StatusCode.ERROR == span.status.status_code
    assert "gave_up" == span.attributes["txpolicy.outcome"]
    assert "attempts" == span.attributes["txpolicy.reason"]
    assert "SerializationError" == span.attributes["error.type"]
    assert ["exception"] == [e.name for e in span.events]
    assert 1 == telemetry.total(
        "txpolicy.transaction.give_ups",
        **{"txpolicy.category": "serialization", "txpolicy.reason": "attempts"},
    )


def test_a_non_retryable_error_is_a_give_up(telemetry, sqlite_factory):
    """A real unique violation is given up at once (reason not_retryable), never retried."""

    @txpolicy.transactional(sqlite_factory)
    def add_twice(session):
        session.execute(sa.text("INSERT INTO item (id) VALUES (7)"))
        session.execute(sa.text("INSERT INTO item (id) VALUES (7)"))

    with pytest.raises(txpolicy.IntegrityError):
        add_twice()

    [span] = telemetry.spans()
    assert "not_retryable" == span.attributes["txpolicy.reason"]
    assert "integrity" == span.attributes["txpolicy.category"]
    assert 1 == span.attributes["txpolicy.attempts"]
    assert 0 == telemetry.total("txpolicy.transaction.retries")


@pytest.mark.parametrize(
    ("idempotent", "outcome"),
    [pytest.param(False, "gave_up", id="raised"), pytest.param(True, "committed", id="retried")],
)
def test_ambiguous_commits_are_counted(telemetry, pg_engine, idempotent, outcome):
    """The backend terminated in reply to COMMIT is an ambiguous commit, raised or retried."""
    factory = sessionmaker(pg_engine)

    @txpolicy.transactional(factory, idempotent=idempotent)
    def touch(session):
        session.execute(sa.text("SELECT 1"))

    with set_testing(), inject_fault(pg_engine, ErrorCategory.CONNECTION, at="commit") as fault:
        if idempotent:
            touch()
        else:
            with pytest.raises(txpolicy.CommitUnknownError):
                touch()

    assert 1 == fault.fired
    [span] = telemetry.spans()
    assert outcome == span.attributes["txpolicy.outcome"]
    assert 1 == telemetry.total("txpolicy.transaction.ambiguous_commits")


def test_the_span_is_a_child_of_the_current_span(telemetry, sqlite_factory):
    """The transaction's span belongs to the trace of the code that ran it."""
    tracer = telemetry.tracer_provider.get_tracer("app")

    @txpolicy.transactional(sqlite_factory)
    def read(session):
        return session.execute(sa.text("SELECT count(*) FROM item")).scalar_one()

    with tracer.start_as_current_span("request") as request:
        read()

    [span] = telemetry.spans(read.__qualname__)
    assert request.get_span_context().span_id == span.parent.span_id
    assert request.get_span_context().trace_id == span.context.trace_id


def test_block_and_context_manager_forms_have_spans(telemetry, sqlite_factory):
    """``attempts()`` blocks and ``with transactional(...)`` are transactions too."""
    for attempt in txpolicy.attempts(sqlite_factory, operation_type="block"):
        with attempt as session:
            session.execute(sa.text("INSERT INTO item (id) VALUES (1)"))
    with txpolicy.transactional(sqlite_factory, operation_type="single") as session:
        session.execute(sa.text("INSERT INTO item (id) VALUES (2)"))

    assert ["block", "single"] == [s.name for s in telemetry.spans()]


@pytest.mark.anyio
async def test_async_transactions_have_spans(telemetry, tmp_path):
    """An async decorated call is recorded the same way, give-up included."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'otel.db'}")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY)")

        @txpolicy.transactional(async_sessionmaker(engine))
        async def add(session, item_id):
            await session.execute(sa.text("INSERT INTO item (id) VALUES (:id)"), {"id": item_id})

        await add(1)
        with pytest.raises(txpolicy.IntegrityError):
            await add(1)
    finally:
        await engine.dispose()

    assert ["committed", "gave_up"] == [s.attributes["txpolicy.outcome"] for s in telemetry.spans()]


def test_retry_events_stay_with_their_own_transaction(telemetry, postgres_url):
    """Threads retrying the same operation at once: every span gets its own event, once."""
    targets = [BenchTarget(postgres_url) for _ in range(4)]
    errors = []

    def work(target):
        write = txpolicy.transactional(target.retry_factory, operation_type="write")(target.write)
        try:
            for _ in range(5):
                target.arm()
                write()
        except Exception as exc:
            errors.append(exc)

    try:
        with set_testing():
            threads = [threading.Thread(target=work, args=(t,)) for t in targets]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
    finally:
        for target in targets:
            target.close()

    assert [] == errors
    spans = telemetry.spans("write")
    assert 20 == len(spans)
    assert [[1]] * 20 == [[e.attributes["txpolicy.attempt"] for e in s.events] for s in spans]


def _children(telemetry, parent, name):
    """The finished spans called *name* whose parent is *parent*."""
    span_id = parent.context.span_id
    return [s for s in telemetry.spans(name) if s.parent is not None and s.parent.span_id == span_id]


@pytest.mark.parametrize("form", ["decorator", "block", "context_manager"])
def test_spans_started_in_the_body_are_children_of_the_transaction_span(
    telemetry, sqlite_factory, form
):
    """The transaction's span is current while the body runs: a span the body starts (as
    SQLAlchemy's or a driver's instrumentation does) is its child, in the same trace."""
    tracer = telemetry.tracer_provider.get_tracer("app")

    def body(session):
        with tracer.start_as_current_span("statement"):
            session.execute(sa.text("INSERT INTO item (id) VALUES (1)"))

    if form == "decorator":
        txpolicy.transactional(sqlite_factory, operation_type="tx")(body)()
    elif form == "block":
        for attempt in txpolicy.attempts(sqlite_factory, operation_type="tx"):
            with attempt as session:
                body(session)
    else:
        with txpolicy.transactional(sqlite_factory, operation_type="tx") as session:
            body(session)

    [transaction] = telemetry.spans("tx")
    [statement] = telemetry.spans("statement")
    assert transaction.context.span_id == statement.parent.span_id
    assert transaction.context.trace_id == statement.context.trace_id
    assert transaction.start_time <= statement.start_time <= statement.end_time
    assert statement.end_time <= transaction.end_time
    assert "committed" == transaction.attributes["txpolicy.outcome"]


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["decorator", "block", "context_manager"])
async def test_async_spans_started_in_the_body_are_children_of_the_transaction_span(
    telemetry, tmp_path, form
):
    """The same for async scopes: the span stays current in the task across awaits."""
    tracer = telemetry.tracer_provider.get_tracer("app")
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'otel.db'}")
    factory = async_sessionmaker(engine)

    async def body(session):
        with tracer.start_as_current_span("statement"):
            await session.execute(sa.text("SELECT 1"))

    try:
        if form == "decorator":
            await txpolicy.transactional(factory, operation_type="tx")(body)()
        elif form == "block":
            async for attempt in txpolicy.attempts(factory, operation_type="tx"):
                async with attempt as session:
                    await body(session)
        else:
            async with txpolicy.transactional(factory, operation_type="tx") as session:
                await body(session)
    finally:
        await engine.dispose()

    [transaction] = telemetry.spans("tx")
    assert 1 == len(_children(telemetry, transaction, "statement"))
    assert trace.INVALID_SPAN == trace.get_current_span()


def test_every_attempt_runs_inside_the_one_transaction_span(telemetry, tmp_path):
    """A real "database is locked", retried: both attempts' spans are children of the one
    transaction span, whose retry event lies between them."""
    tracer = telemetry.tracer_provider.get_tracer("app")
    target = BenchTarget(f"sqlite:///{tmp_path / 'locked.db'}")

    @txpolicy.transactional(target.retry_factory)
    def write(session):
        with tracer.start_as_current_span("attempt"):
            target.write(session)

    try:
        target.arm()
        with set_testing():
            write()
    finally:
        target.close()

    [transaction] = telemetry.spans(write.__qualname__)
    first, second = sorted(_children(telemetry, transaction, "attempt"), key=lambda s: s.start_time)
    [event] = transaction.events
    assert (2, "committed") == (
        transaction.attributes["txpolicy.attempts"],
        transaction.attributes["txpolicy.outcome"],
    )
    assert ("txpolicy.retry", "lock_timeout") == (event.name, event.attributes["txpolicy.category"])
    assert first.end_time <= event.timestamp <= second.start_time


def test_nested_transactions_nest_their_spans(telemetry, sqlite_factory):
    """A ``requires_new`` transaction inside another is a child span of it; a joined scope
    is part of its owner's span and has none of its own."""

    @txpolicy.transactional(sqlite_factory, propagation="requires_new")
    def audit(session):
        session.execute(sa.text("SELECT 1"))

    @txpolicy.transactional(sqlite_factory)
    def joined(session):
        session.execute(sa.text("SELECT 1"))

    @txpolicy.transactional(sqlite_factory)
    def outer(session):
        joined()
        audit()

    outer()

    [span] = telemetry.spans(outer.__qualname__)
    assert [] == telemetry.spans(joined.__qualname__)
    assert 1 == len(_children(telemetry, span, audit.__qualname__))


def test_a_body_error_ends_the_span_with_an_error_status(telemetry, sqlite_factory):
    """An exception that is not a database error leaves the scope unchanged; its span says
    ``error`` and records it, and no give-up is counted."""

    @txpolicy.transactional(sqlite_factory)
    def broken(session):
        session.execute(sa.text("SELECT 1"))
        raise LookupError("no such thing")

    with pytest.raises(LookupError):
        broken()

    [span] = telemetry.spans()
    assert ("error", "LookupError") == (
        span.attributes["txpolicy.outcome"],
        span.attributes["error.type"],
    )
    assert ["exception"] == [e.name for e in span.events]
    assert trace.StatusCode.ERROR == span.status.status_code
    assert 0 == telemetry.total("txpolicy.transaction.give_ups")


def test_nothing_is_imported_or_registered_until_enabled():
    """A process that never enables OpenTelemetry imports none of it and registers no hook,
    even after importing ``txpolicy.instrumentation`` and running transactions."""
    code = """
import sys
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
import txpolicy, txpolicy.instrumentation
from txpolicy._hooks import HOOKS

engine = sa.create_engine("sqlite://")
one = txpolicy.transactional(sessionmaker(engine))(lambda s: s.execute(sa.text("SELECT 1")))
one()
for attempt in txpolicy.attempts(engine):
    with attempt as conn:
        conn.execute(sa.text("SELECT 1"))
engine.dispose()
print(sorted(m for m in sys.modules if m.partition(".")[0] == "opentelemetry"))
print((HOOKS.scope, HOOKS.retry, HOOKS.give_up, HOOKS.success))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert ("", 0) == (done.stderr, done.returncode)
    assert ["[]", "((), (), (), ())"] == done.stdout.splitlines()


def test_disable_stops_the_spans(sqlite_factory):
    """After ``disable_opentelemetry()`` no span is recorded and no hook is left behind."""
    before = (HOOKS.scope, HOOKS.retry, HOOKS.give_up, HOOKS.success)
    t = Telemetry()
    enable_opentelemetry(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    assert is_opentelemetry_enabled()

    disable_opentelemetry()
    with txpolicy.transactional(sqlite_factory) as session:
        session.execute(sa.text("SELECT 1"))

    assert not is_opentelemetry_enabled()
    assert before == (HOOKS.scope, HOOKS.retry, HOOKS.give_up, HOOKS.success)
    assert [] == t.spans()
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


def test_enabling_twice_replaces_the_providers(sqlite_factory):
    """A second ``enable_opentelemetry()`` replaces the first: spans are never doubled."""
    first, second = Telemetry(), Telemetry()
    enable_opentelemetry(tracer_provider=first.tracer_provider, meter_provider=first.meter_provider)
    enable_opentelemetry(
        tracer_provider=second.tracer_provider, meter_provider=second.meter_provider
    )
    try:
        with txpolicy.transactional(sqlite_factory) as session:
            session.execute(sa.text("SELECT 1"))
    finally:
        disable_opentelemetry()

    assert (0, 1) == (len(first.spans()), len(second.spans()))
    for t in (first, second):
        t.tracer_provider.shutdown()
        t.meter_provider.shutdown()


def test_without_opentelemetry_it_is_a_no_op(monkeypatch):
    """Without ``opentelemetry`` installed, enabling returns False and registers nothing,
    so the path where nothing fails stays free of hooks."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # what a missing package looks like
    before = (HOOKS.scope, HOOKS.retry, HOOKS.give_up, HOOKS.success)

    assert not enable_opentelemetry()
    assert not is_opentelemetry_enabled()
    assert before == (HOOKS.scope, HOOKS.retry, HOOKS.give_up, HOOKS.success)
