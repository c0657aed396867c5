"""One pattern for every extension point: a named `Registry` of entries.

Each package owns the registry of what it provides (`gbml_ext.algorithms.ALGORITHMS`,
`gbml_ext.optim.TRANSFORMS`, `gbml_ext.nn.MODELS`, `gbml_ext.data.registry.DATASETS` and
`SAMPLERS`, `gbml_ext.data.synthetic.SYNTHETIC_SOURCES`, `benchmarks.peers.PEERS`). The runner's
schema takes its allowed values from `names()`, and an unknown name is one line that lists the
choices, so no other module spells the names.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Generic, Iterator, List, Sequence, TypeVar, overload

__all__ = ["Registry", "UnknownName"]

T = TypeVar("T")
_MISSING: Any = object()


class UnknownName(KeyError, ValueError):
    """A name that is not registered. Its message is one line naming the choices; it is a
    `KeyError` (a registry is a mapping) and a `ValueError` (a bad argument value)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Entries by name, in registration order, with optional aliases and a one-line doc each.

    Arguments:
        kind: what the entries are, as a user names them in an error ("algorithm.name",
            "dataset", "benchmark peer").

    Example:
        >>> SHAPES = Registry[int]("shape")
        >>> @SHAPES.register("square", aliases=("box",), doc="four sides")
        ... def square() -> int:
        ...     return 4
        >>> _ = SHAPES.register("triangle", lambda: 3)     # the plain call form
        >>> SHAPES.names(), SHAPES["box"](), "circle" in SHAPES
        (['square', 'triangle'], 4, False)
        >>> SHAPES["circle"]
        Traceback (most recent call last):
        ...
        gbml_ext.registry.UnknownName: unknown shape 'circle'; choose one of square, triangle \
(aliases: box).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}
        self._aliases: Dict[str, str] = {}
        self._docs: Dict[str, str] = {}

    @overload
    def register(self, name: str, *, aliases: Sequence[str] = (),
                 doc: str = "") -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T, *, aliases: Sequence[str] = (),
                 doc: str = "") -> T: ...

    def register(self, name: str, entry: Any = _MISSING, *, aliases: Sequence[str] = (),
                 doc: str = "") -> Any:
        """Registers `entry` under `name` (and `aliases`) and returns it; without `entry`, a
        decorator that does so.

        Raises:
            ValueError: `name` or an alias is taken already.
        """
        if entry is _MISSING:
            return lambda value: self.register(name, value, aliases=aliases, doc=doc)
        taken = [n for n in (name, *aliases) if n in self._entries or n in self._aliases]
        if taken:
            raise ValueError(f"{self.kind} {taken[0]!r} is registered already; choose another "
                             f"name or unregister it first.")
        self._entries[name] = entry
        self._docs[name] = doc
        self._aliases.update((alias, name) for alias in aliases)
        return entry

    def unregister(self, name: str) -> T:
        """Removes `name` and its aliases; returns its entry."""
        name = self.canonical(name)
        self._aliases = {a: n for a, n in self._aliases.items() if n != name}
        self._docs.pop(name, None)
        return self._entries.pop(name)

    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases.

        Raises:
            UnknownName: neither a name nor an alias; the message lists the choices.
        """
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        aliases = f" (aliases: {', '.join(self._aliases)})" if self._aliases else ""
        raise UnknownName(f"unknown {self.kind} {name!r}; choose one of "
                          f"{', '.join(self._entries)}{aliases}.")

    def __getitem__(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def get(self, name: str, default: Any = None) -> Any:
        """The entry of `name` (or an alias), or `default`."""
        return self[name] if name in self else default

    def __setitem__(self, name: str, entry: T) -> None:
        """Registers `entry` under `name`, replacing what was there (tests swap entries so)."""
        if name in self._entries:
            self._entries[name] = entry
        else:
            self.register(name, entry)

    def __delitem__(self, name: str) -> None:
        self.unregister(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> List[str]:
        """The registered names, in registration order (aliases left out)."""
        return list(self._entries)

    def aliases(self) -> Dict[str, str]:
        """{alias: name}."""
        return dict(self._aliases)

    def items(self) -> List[tuple[str, T]]:
        """(name, entry) pairs, in registration order."""
        return list(self._entries.items())

    def doc(self, name: str) -> str:
        """The one-line description `name` was registered with."""
        return self._docs[self.canonical(name)]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
