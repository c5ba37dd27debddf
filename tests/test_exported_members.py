"""The public surface: ``__all__`` is complete, sorted, importable and documented."""

from __future__ import annotations

import __future__
import enum
import importlib
import inspect
import types

import pytest

import txpolicy

PUBLIC_MODULES = ["txpolicy", "txpolicy.instrumentation", "txpolicy.testing"]


def _own_doc(obj: object) -> str:
    """The object's own docstring: unlike inspect.getdoc, a class never inherits one."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return doc.strip() if isinstance(doc, str) else ""


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_complete(name: str) -> None:
    """Every public attribute is listed in ``__all__``, except modules and the two names
    that imports for type checking leave behind (``annotations``, ``TYPE_CHECKING``)."""
    module = importlib.import_module(name)

    public = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and attribute != "TYPE_CHECKING"
        and not isinstance(value, (types.ModuleType, __future__._Feature))
    }

    assert set() == public - set(module.__all__)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_unique(name: str) -> None:
    """``__all__`` is sorted (as ruff's RUF022 sorts it) and has no duplicates."""
    module = importlib.import_module(name)

    assert sorted(set(module.__all__)) == list(module.__all__)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_name_is_importable(name: str) -> None:
    """``from module import name`` works for every name in ``__all__``."""
    module = importlib.import_module(name)

    missing = []
    for attribute in module.__all__:
        try:
            exec(f"from {name} import {attribute}", {})  # noqa: S102 - the statement users write
        except ImportError:
            missing.append(attribute)

    assert [] == missing


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_name_has_a_docstring(name: str) -> None:
    """Every exported object, and every public method or property of an exported class,
    has a docstring of its own (the API reference is generated from them)."""
    module = importlib.import_module(name)

    missing = []
    for attribute in module.__all__:
        obj = getattr(module, attribute)
        if not _own_doc(obj):
            missing.append(attribute)
        if inspect.isclass(obj) and not issubclass(obj, enum.Enum):
            # Public methods count wherever they are defined in txpolicy, private bases included.
            for base in obj.__mro__:
                if not base.__module__.startswith("txpolicy"):
                    continue
                for member_name, member in vars(base).items():
                    function = getattr(member, "__func__", member)
                    is_api = inspect.isfunction(function) or isinstance(member, property)
                    if is_api and not member_name.startswith("_") and not _own_doc(function):
                        missing.append(f"{attribute}: {base.__qualname__}.{member_name}")

    assert [] == missing


def test_version() -> None:
    """``txpolicy.__version__`` is the installed distribution's version, read lazily."""
    from importlib.metadata import version

    assert version("txpolicy") == txpolicy.__version__
    assert "__version__" not in txpolicy.__all__
