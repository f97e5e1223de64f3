"""One small generic registry, used for data sources, backbones and PEFT methods.

Extending medpeft means adding a module and one ``@REGISTRY.register("name")`` call, never
growing an if/elif chain (the habit timm's ``@register_model`` and HF peft's tuner mapping
teach). Unknown names fail with the list of valid names and a close-match suggestion.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps short names to objects (classes, functions, specs) of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # old name -> registered name (still accepted, never listed)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("lora")``."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        if name in self._items or name in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj

    def alias(self, old: str, name: str) -> None:
        """Accept ``old`` for ``name`` (a renamed entry that saved files still use); not listed."""
        if old in self._items or old in self._aliases:
            raise ValueError(f"{self.kind} {old!r} is registered twice")
        self._aliases[old] = name

    def get(self, name: str) -> T:
        try:
            return self._items[self._aliases.get(name, name)]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = difflib.get_close_matches(name, self._items, n=1)
        suggestion = f" Did you mean {hint[0]!r}?" if hint else ""
        return f"unknown {self.kind} {name!r}.{suggestion} Valid: {', '.join(sorted(self._items))}"

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self):
        return self._items.items()
