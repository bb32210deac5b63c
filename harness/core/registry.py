"""One small name -> object registry, with "did you mean ...?" errors."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from harness.core.errors import HarnessError

T = TypeVar("T")


class UnknownNameError(HarnessError, KeyError):
    """A name that is not registered; the message suggests the closest ones."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class DuplicateNameError(HarnessError, ValueError):
    """A second object under a name already taken."""


class Registry(Generic[T]):
    """Maps names to objects of one kind (submissions, datasets, ...).

    A name is taken once: a second object under it is an error naming both places
    (``origin(item)``, e.g. ``file:line``). The same object added again, as when its file is
    imported a second time, replaces the first.
    """

    def __init__(self, kind: str, origin: Callable[[T], str] = lambda item: ""):
        self.kind = kind
        self.origin = origin
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items and (first := self.origin(self._items[name])) != (second := self.origin(item)):
            raise DuplicateNameError(f"{self.kind} {name!r} is registered twice: at {first} and at {second}; "
                                     f"rename one of them")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, list(self._items))} Known: {known}."
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)
