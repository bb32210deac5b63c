"""One small name -> object registry, with "did you mean ...?" errors."""
from __future__ import annotations

import difflib
import re
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


class BadNameError(HarnessError, ValueError):
    """A name that is not an identifier: names become folder names, so ``../x`` must never be one."""


NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # the one rule for every registered name


def check_name(kind: str, name: object, where: str = "") -> str:
    """``name`` if it is an identifier (lower case, digits, ``_``, starting with a letter, at most 64)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        place = f" ({where})" if where else ""
        raise BadNameError(f"{kind} name {name!r}{place} is not an identifier: use lower-case letters, digits "
                           f"and _, starting with a letter (e.g. {_suggest(name)!r})")
    return name


def _suggest(name: object) -> str:
    text = re.sub(r"[^a-z0-9_]+", "_", str(name).lower()).strip("_")
    return (text if text[:1].isalpha() else f"x_{text}")[:64] or "my_name"


def defined_at(function: Callable) -> str:
    """Where ``function`` is defined, as ``file:line`` (its repr when it has no source): the origin a
    registry names when one name is registered twice."""
    import inspect

    code = getattr(function, "__code__", None)
    return f"{inspect.getsourcefile(function)}:{code.co_firstlineno}" if code else repr(function)


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
        check_name(self.kind, name, self.origin(item))
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
