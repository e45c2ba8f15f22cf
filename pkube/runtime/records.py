"""Record: the base of the runtime's small value classes (specs, states, results).

Why not `dataclasses`: importing it imports `inspect`, and with it `ast`, `dis` and
`tokenize`; with the code it generates per class, that was 8-10 ms of every `pdocker`
command, about a fifth of its imports (`python -X importtime`). The runtime's records need
little of it: keyword (or positional) construction with defaults, equality, a repr, a plain
dict for JSON, and for some immutability. That is this class.

A record lists its fields in FIELDS, in order, as names or (name, default) pairs; a default
that is a list, dict or set is copied per instance (so `[]` and `{}` are safe), and a
default of `Record.factory(fn)` calls fn() per instance. `FROZEN = True` makes
instances immutable (and hashable). `__post_init__`, when defined, runs after __init__
(validation), as with dataclasses.
"""

from __future__ import annotations


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


_REQUIRED = object()


def _fields(cls) -> tuple[tuple[str, object], ...]:
    """(name, default or _REQUIRED) of every field of `cls`, computed once per class."""
    cached = cls.__dict__.get("_field_defaults")
    if cached is None:
        cached = tuple((f, _REQUIRED) if isinstance(f, str) else (f[0], f[1]) for f in cls.FIELDS)
        cls._field_defaults = cached
    return cached


def _default(value):
    if isinstance(value, _Factory):
        return value.make()
    if type(value) in (list, dict, set):
        return type(value)(value)
    return value


class Record:
    """Base of the runtime's records; see the module docstring."""

    FIELDS: tuple = ()
    FROZEN = False

    @staticmethod
    def factory(make) -> _Factory:
        """A default made by calling `make()` for each new instance."""
        return _Factory(make)

    def __init__(self, *args, **kwargs):
        fields = _fields(type(self))
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} positional arguments, got {len(args)}")
        setter = object.__setattr__
        for (name, default), value in zip(fields, args):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument {name!r}")
            setter(self, name, value)
        for name, default in fields[len(args):]:
            if name in kwargs:
                setter(self, name, kwargs.pop(name))
            elif default is _REQUIRED:
                raise TypeError(f"{type(self).__name__}() missing required argument: {name!r}")
            else:
                setter(self, name, _default(default))
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {next(iter(kwargs))!r}")
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(name for name, _ in _fields(cls))

    def field_values(self) -> tuple:
        return tuple(getattr(self, name) for name, _ in _fields(type(self)))

    def to_dict(self) -> dict:
        """Fields as a dict, records inside (also in lists, tuples and dicts) as dicts too,
        like dataclasses.asdict."""
        return {name: _plain(getattr(self, name)) for name, _ in _fields(type(self))}

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self.field_values() == other.field_values()

    def __hash__(self):
        if not self.FROZEN:
            raise TypeError(f"unhashable type: {type(self).__name__!r}")
        return hash(self.field_values())

    def __setattr__(self, name, value):
        if self.FROZEN:
            raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if self.FROZEN:
            raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")
        object.__delattr__(self, name)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name, _ in _fields(type(self)))
        return f"{type(self).__name__}({inner})"


def _plain(value):
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
