"""The pytest plugin ``txpolicy``: registration, the two fixtures, and nothing leaking between tests."""

from __future__ import annotations

import subprocess
import sys

from txpolicy.testing import set_testing


def test_the_plugin_is_registered_under_its_name(pytester):
    """The pytest11 entry point registers the plugin as ``txpolicy`` in every run."""
    pytester.makepyfile(
        """
        def test_registered(request):
            assert request.config.pluginmanager.hasplugin("txpolicy")
        """
    )

    result = pytester.runpytest("--trace-config")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*txpolicy*txpolicy*pytest_plugin*"])


def test_txpolicy_testing_enables_no_wait_mode_and_restores_it(pytester):
    """Inside a test that asks for it, testing mode is on; before and after, it is what it was."""
    pytester.makepyfile(
        """
        from txpolicy._config import is_testing

        def test_before():
            assert not is_testing()

        def test_with(txpolicy_testing):
            assert is_testing()

        def test_after():
            assert not is_testing()
        """
    )

    with set_testing(False):
        result = pytester.runpytest()

    result.assert_outcomes(passed=3)


def test_txpolicy_testing_makes_retries_instant(pytester):
    """A retried transaction whose policy would wait 5 s per retry finishes at once."""
    pytester.makepyfile(
        """
        import time

        import sqlalchemy as sa

        import txpolicy
        from txpolicy import ErrorCategory


        def test_retry(txpolicy_testing, txpolicy_faults, tmp_path):
            engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
            policy = txpolicy.RetryPolicy(wait_initial=5, wait_max=5, jitter="none")
            calls = []

            @txpolicy.transactional(engine, policy=policy)
            def work(conn):
                calls.append(1)
                return conn.execute(sa.text("SELECT 42")).scalar_one()

            handle = txpolicy_faults.inject(engine, ErrorCategory.LOCK_TIMEOUT, times=2)
            started = time.monotonic()
            assert 42 == work()
            assert (3, 2) == (len(calls), handle.fired)
            assert time.monotonic() - started < 4
            engine.dispose()
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(passed=1)


def test_faults_do_not_leak_into_the_next_test(pytester):
    """Faults injected through txpolicy_faults are removed after the test, passed or failed."""
    pytester.makepyfile(
        """
        import pytest
        import sqlalchemy as sa

        from txpolicy import ErrorCategory

        ENGINE = sa.create_engine("sqlite://")
        HANDLES = []


        def answer():
            with ENGINE.connect() as conn:
                return conn.execute(sa.text("SELECT 42")).scalar_one()


        def test_inject_and_pass(txpolicy_faults):
            HANDLES.append(txpolicy_faults.inject(ENGINE, ErrorCategory.DATA, times=5))
            with pytest.raises(sa.exc.DataError):
                answer()
            assert (1, 4) == (HANDLES[-1].fired, HANDLES[-1].remaining)


        def test_nothing_left_after_a_pass():
            assert 42 == answer()
            assert 0 == HANDLES[0].remaining


        def test_inject_and_fail(txpolicy_faults):
            HANDLES.append(txpolicy_faults.inject(ENGINE, ErrorCategory.DATA, at="commit", times=5))
            assert 1 == len(txpolicy_faults.handles)
            raise AssertionError("this test fails on purpose")


        def test_nothing_left_after_a_failure():
            with ENGINE.begin() as conn:
                assert 42 == conn.execute(sa.text("SELECT 42")).scalar_one()
            assert (0, 0) == (HANDLES[1].fired, HANDLES[1].remaining)
            ENGINE.dispose()
        """
    )

    result = pytester.runpytest()

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: this test fails on purpose"])


def test_importing_the_plugin_loads_no_testing_machinery():
    """pytest imports the plugin in every run: it must not import the fault machinery itself."""
    code = (
        "import sys, txpolicy.pytest_plugin; "
        "print(sorted(m for m in ('txpolicy.testing', 'txpolicy._faults') if m in sys.modules))"
    )

    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout

    assert "[]" == output.strip()


def test_the_fixtures_are_listed_with_their_documentation(pytester):
    """``pytest --fixtures`` shows both fixtures, each with its docstring."""
    result = pytester.runpytest("--fixtures")

    result.stdout.fnmatch_lines(
        [
            "txpolicy_testing*",
            "*no-wait mode*",
            "txpolicy_faults*",
            "*fault injector whose faults are all removed*",
        ]
    )
