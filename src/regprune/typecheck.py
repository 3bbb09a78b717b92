"""Check a config node's values against the type hints of the constructor it will be passed to.

A wrong type then reads ``lam='abc': expected float, got str`` instead of whatever comparison first
fails inside the constructor; an unknown key reads ``unknown key 'foo'; allowed: ...``.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

NONE = type(None)


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, typing.TypeVar):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is NONE:
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str):
        return isinstance(value, hint)
    container = origin or hint
    if not isinstance(container, type):
        return True  # a hint this check does not understand: the constructor decides
    if issubclass(container, Mapping):
        return isinstance(value, Mapping)
    if issubclass(container, Sequence) and container is not str:
        if not isinstance(value, Sequence) or isinstance(value, str):
            return False
        item = args[0] if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis) else Any
        return all(_matches(v, item) for v in value)
    return True  # other classes (a tensor, a module): not expressible in a yaml value


def describe(hint: Any) -> str:
    """A type hint as a reader of a yaml file would name it: ``float``, ``list of int``, ``str or null``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if hint is NONE:
        return "null"
    container = origin or hint
    if isinstance(container, type) and issubclass(container, Sequence) and container is not str and args:
        return f"list of {describe(args[0])}"
    return getattr(container, "__name__", str(hint))


def yaml_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "list"
    return {bool: "bool", int: "int", float: "float", str: "str", NONE: "null"}.get(type(value), type(value).__name__)


def parameters(fn: Callable) -> tuple[dict[str, Any], bool]:
    """(parameter name -> type hint, whether it also takes ``**kwargs``) of a function or class.

    A class whose ``__init__`` takes ``**kwargs`` is assumed to pass them on to its base class, whose
    parameters are added (``Digits(size, **loader)`` -> ``DatasetSpec(batch_size, ...)``).
    """
    while isinstance(fn, partial):
        fn = fn.func
    inits = [c.__init__ for c in fn.__mro__ if "__init__" in vars(c)] if inspect.isclass(fn) else [fn]
    names: dict[str, Any] = {}
    for init in inits:
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # unresolvable annotations: check names only
            hints = {}
        params = inspect.signature(init).parameters
        for n, p in params.items():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self":
                names.setdefault(n, hints.get(n, p.annotation))
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names, False
    return names, True


def check_arguments(fn: Callable, values: Mapping[str, Any]) -> None:
    """Raise ``ValueError("key=value: expected T, got U")`` for the first value ``fn`` cannot take."""
    names, open_ended = parameters(fn)
    for key, value in values.items():
        if key not in names:
            if not open_ended:
                raise ValueError(f"unknown key {key!r}; allowed: {', '.join(sorted(names))}")
            continue
        if not _matches(value, names[key]):
            raise ValueError(f"{key}={value!r}: expected {describe(names[key])}, got {yaml_type(value)}")
