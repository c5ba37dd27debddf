"""
Prove that mypy flags misuse of txpolicy's transaction API.

Runs ``mypy --strict`` on the snippets below (one file, one function per snippet). Every line
marked ``# E: <code>`` must get an error with that code, and no other line may get one. Exits
0 when that holds, 1 otherwise (listing what went wrong). Run: ``python tests/typing/check_misuse.py``.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from mypy import api

HEADER = '''
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

import txpolicy

engine = sa.create_engine("sqlite://")
async_engine = create_async_engine("sqlite+aiosqlite://")
Sessions = sessionmaker(engine)
AsyncSessions = async_sessionmaker(async_engine)


@txpolicy.transactional(Sessions)
def transfer(session: Session, src: int, dst: int) -> str:
    return f"{src}->{dst}"


@txpolicy.transactional(AsyncSessions)
async def load(session: AsyncSession, key: str) -> int:
    return len(key)
'''

SNIPPETS = {
    "the caller passes the session itself": '''
def passes_session(session: Session) -> None:
    transfer(session, 1, 2)  # E: call-arg
''',
    "an argument of the wrong type": '''
def wrong_argument() -> None:
    transfer("1", 2)  # E: arg-type
''',
    "a missing argument": '''
def missing_argument() -> None:
    transfer(1)  # E: call-arg
''',
    "a Connection function on a sessionmaker bind": '''
def connection_on_sessionmaker() -> None:
    @txpolicy.transactional(Sessions)  # E: arg-type
    def wrong(conn: sa.Connection) -> None: ...
''',
    "a sync function on an async bind": '''
def sync_on_async() -> None:
    @txpolicy.transactional(AsyncSessions)  # E: arg-type
    def wrong(session: AsyncSession) -> int:
        return 1
''',
    "the async wrapper's result used without await": '''
async def not_awaited() -> None:
    value: int = load("k")  # E: assignment
''',
    "sync with on an async bind": '''
def sync_with_on_async_bind() -> None:
    with txpolicy.transactional(async_engine):  # E: attr-defined
        pass
''',
    "async with on a sync bind": '''
async def async_with_on_sync_bind() -> None:
    async with txpolicy.transactional(engine):  # E: attr-defined
        pass
''',
    "an Engine scope yields a Connection, not a Session": '''
def engine_yields_connection() -> None:
    with txpolicy.transactional(engine) as conn:
        session: Session = conn  # E: assignment
''',
    "a sync for over async attempts": '''
def sync_for_over_async_attempts() -> None:
    for attempt in txpolicy.attempts(async_engine):  # E: attr-defined
        pass
''',
    "an unknown propagation": '''
def unknown_propagation() -> None:
    txpolicy.transactional(Sessions, propagation="sometimes")  # E: call-overload
''',
    "an unsupported bind": '''
def unsupported_bind() -> None:
    txpolicy.transactional("sqlite://")  # E: call-overload
''',
    "a non-callable on_commit callback": '''
def bad_callback() -> None:
    txpolicy.on_commit(1)  # E: arg-type
''',
    "attempts given as a string": '''
def attempts_as_string() -> None:
    txpolicy.RetryPolicy(attempts="3")  # E: arg-type
''',
    "an unknown jitter": '''
def unknown_jitter() -> None:
    txpolicy.RetryPolicy(jitter="equal")  # E: arg-type
''',
}

_MARK = re.compile(r"#\s*E:\s*([a-z-]+)")
_ERROR = re.compile(r"^[^:]+:(\d+): error: .*\[([a-z-]+)\]$")


def main() -> int:
    """Write the snippets, run mypy once, compare expected and reported errors line by line."""
    source = HEADER + "".join(SNIPPETS.values())
    expected: dict[int, str] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        mark = _MARK.search(line)
        if mark:
            expected[number] = mark.group(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "misuse.py"
        path.write_text(source)
        stdout, stderr, _status = api.run(
            ["--strict", "--no-incremental", "--show-error-codes", "--no-error-summary", str(path)]
        )
    reported: dict[int, set[str]] = {}
    for line in stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            reported.setdefault(int(match.group(1)), set()).add(match.group(2))
    lines = source.splitlines()
    problems = [
        f"line {n}: expected [{code}], got {sorted(reported.get(n, set())) or 'nothing'}: "
        f"{lines[n - 1].strip()}"
        for n, code in sorted(expected.items())
        if code not in reported.get(n, set())
    ]
    problems += [
        f"line {n}: unexpected {sorted(codes)}: {lines[n - 1].strip()}"
        for n, codes in sorted(reported.items())
        if n not in expected
    ]
    if stderr.strip():
        problems.append(f"mypy failed: {stderr.strip()}")
    if problems:
        sys.stdout.write("misuse not flagged as expected:\n  " + "\n  ".join(problems) + "\n")
        return 1
    sys.stdout.write(f"all {len(expected)} misuses flagged by mypy\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
