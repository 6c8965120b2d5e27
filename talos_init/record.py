"""Record classes for PID 1's modules: ``dataclasses`` without its start-up cost.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``)
and compiles generated source for every class it decorates: under TCG that was
about half of PID 1's import time (docs/for-devs/performance.md). ``record``
gives the same ``__init__``, ``__repr__`` and ``__eq__`` (with ``frozen``:
``__hash__`` and no assignment), built from the class annotations with no
``exec``; ``field(default_factory=...)`` and ``replace`` work as there.
A class with ``__post_init__`` is refused: it would never be called.
Type checkers treat it as a dataclass (``dataclass_transform``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")
_MISSING = object()


class FrozenRecordError(AttributeError):
    """Assignment to a field of a frozen record."""


class Field:
    __slots__ = ("default_factory",)

    def __init__(self, default_factory: Callable[[], Any]):
        self.default_factory = default_factory


def field(*, default_factory: Callable[[], Any]) -> Any:
    """A default built per instance (a list, a dict, another record)."""
    return Field(default_factory)


@dataclass_transform(field_specifiers=(field,))
def record(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """Decorate ``cls`` (or return a decorator, with ``frozen``)."""
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)


def fields(obj: Any) -> tuple[str, ...]:
    """The field names of a record class or instance, in order."""
    return obj.__record_fields__


def replace(obj: T, **changes: Any) -> T:
    """A copy of ``obj`` with ``changes``, made through its ``__init__``."""
    values = {name: getattr(obj, name) for name in fields(obj)}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {min(unknown)!r}")
    values.update(changes)
    return type(obj)(**values)


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _build(cls: Any, frozen: bool) -> Any:
    if hasattr(cls, "__post_init__"):  # dataclasses would call it; our __init__ would not
        raise TypeError(f"{cls.__name__}: record does not call __post_init__; "
                        "use a dataclass, or a classmethod that builds it")
    defaults: dict[str, Any] = {}
    names: list[str] = []
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063 - not inspect
        if _is_classvar(annotation):
            continue
        default = cls.__dict__.get(name, _MISSING)
        if default is _MISSING and defaults:
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with")
        if isinstance(default, Field):
            delattr(cls, name)  # instances get their own value
        if default is not _MISSING:
            defaults[name] = default
        names.append(name)
    order = tuple(names)
    known = frozenset(order)
    setter = object.__setattr__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(order):
            raise TypeError(f"{cls.__name__}() takes {len(order)} positional arguments "
                            f"but {len(args)} were given")
        for name in kwargs:
            if name not in known:
                raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
        for i, name in enumerate(order):
            if i < len(args):
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
                value = args[i]
            elif name in kwargs:
                value = kwargs[name]
            else:
                value = defaults.get(name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
                if isinstance(value, Field):
                    value = value.default_factory()
            setter(self, name, value)

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in order)
        return f"{type(self).__qualname__}({inner})"

    def _values(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in order)

    def __eq__(self: Any, other: Any) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _values(self) == _values(other)

    own = cls.__dict__
    cls.__init__ = __init__
    if "__repr__" not in own:
        cls.__repr__ = __repr__
    if "__eq__" not in own:
        cls.__eq__ = __eq__
    cls.__record_fields__ = order
    # mypy refuses any assignment to __match_args__, even on an Any; at runtime it is how
    # ``case Cls(a, b)`` finds the fields, as on a dataclass.
    cls.__match_args__ = order  # type: ignore[misc]
    if frozen:
        def __setattr__(self: Any, name: str, value: Any) -> None:
            raise FrozenRecordError(f"cannot assign to field {name!r} of a frozen {cls.__name__}")

        def __delattr__(self: Any, name: str) -> None:
            raise FrozenRecordError(f"cannot delete field {name!r} of a frozen {cls.__name__}")

        cls.__setattr__ = __setattr__
        cls.__delattr__ = __delattr__
    if own.get("__hash__") is None:  # unless the class has its own
        # Mutable and compared by value: unhashable, as a dataclass.
        cls.__hash__ = (lambda self: hash(_values(self))) if frozen else None
    for fn in (__init__, __repr__, __eq__):
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
    return cls
