"""Steps found by name: built-ins register here, plug-ins through entry points.

One registry class serves domains, generators and filters so that a
researcher's package and trajforge itself add steps the same way: a class
decorated with ``REGISTRY.register(name)``, or named in an entry point of the
registry's group (``trajforge.domains``, ``trajforge.generators``,
``trajforge.filters``), which ``get`` loads on first use. Either way the
object is checked against the registry's base class and ends up in the same
table, so a plug-in step is indistinguishable from a built-in one.

Entry points are listed without being imported, so one broken plug-in fails
only when its own name is asked for, with a message naming its package.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Generic, TypeVar

T = TypeVar("T")

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


class Step:
    """What generators and filters share: the ``name`` their registry gives them, and words for their own counters.

    A step that counts what its own stages did (``SynthesisContext.count`` for a
    generator) says here what the counts mean; the pipeline prints, charts and
    cards whatever steps report, and knows no step's counter names.
    """

    name: ClassVar[str]

    @classmethod
    def funnel_lines(cls, counts: Mapping[str, int]) -> list[str]:
        """The counters in words, for the end-of-run summary and the card; the first line follows ``name: ``."""
        return [", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]

    @classmethod
    def funnel_steps(cls, counts: Mapping[str, int]) -> list[tuple[str, int]]:
        """The counters as (label, count) bars for the report, in the order a task meets them."""
        return sorted(counts.items())


class UnknownStepError(KeyError):
    """A name the registry does not know, or a step that cannot be loaded; ``str`` is one line."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Named steps of one kind.

    ``base`` is the class every step must subclass; ``builtins`` is a module
    whose import registers the built-in steps, imported on first lookup so a
    lookup never depends on what happened to be imported before.
    """

    def __init__(self, kind: str, group: str, base: type | None = None, builtins: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self.builtins = builtins
        self._items: dict[str, T] = {}
        self._entry_points: dict[str, EntryPoint] | None = None
        self._loaded: set[str] = set()  # names whose step came from an entry point

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make ``obj`` available under ``name``."""

        def add(obj: T) -> T:
            self._add(name, obj, origin=f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}")
            return obj

        return add

    def _add(self, name: str, obj: Any, origin: str) -> None:
        if not NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be a letter then up to 63 letters, digits, '_', '-', '.'")
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise TypeError(f"{self.kind} {name!r} ({origin}) must be a subclass of "
                            f"{self.base.__module__}.{self.base.__qualname__}")
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({origin} and an earlier one)")
        declared = vars(obj).get("name") if isinstance(obj, type) else None  # its own, not a parent's
        if isinstance(declared, str) and declared != name:
            raise ValueError(f"{self.kind} {name!r} ({origin}) declares name = {declared!r}; the two must agree")
        if isinstance(obj, type) and not isinstance(declared, str):
            obj.name = name  # the name rejected rows and tasks carry
        self._items[name] = obj

    def _load_builtins(self) -> None:
        if self.builtins:
            importlib.import_module(self.builtins)

    def _discover(self) -> dict[str, EntryPoint]:
        """Entry points of the group by name, listed once, not imported."""
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def _load_entry_point(self, ep: EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        where = f"entry point {ep.name} = {ep.value} in group {self.group}" + (
            f" (package {dist.name} {dist.version})" if dist is not None else "")
        try:
            obj = ep.load()
        except Exception as err:
            raise UnknownStepError(f"{self.kind} {ep.name!r} failed to load from {where}: "
                                   f"{type(err).__name__}: {err}") from None
        try:
            self._add(ep.name, obj, origin=where)
        except (TypeError, ValueError) as err:
            raise UnknownStepError(str(err)) from None
        self._loaded.add(ep.name)

    def get(self, name: str) -> T:
        """The step called ``name``; ``UnknownStepError`` lists the known names when there is none."""
        self._load_builtins()
        if name not in self._items:
            ep = self._discover().get(name)
            if ep is None:
                raise UnknownStepError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}")
            self._load_entry_point(ep)
        return self._items[name]

    def names(self) -> list[str]:
        """Every known name, built-in or from an installed package, without importing plug-ins."""
        self._load_builtins()
        return sorted(set(self._items) | set(self._discover()))

    def refresh(self) -> None:
        """Forget the entry-point listing and the steps loaded from it, e.g. after installing or removing a
        package in a running interpreter; they are found again on the next lookup."""
        self._entry_points = None
        for name in self._loaded:
            self._items.pop(name, None)
        self._loaded.clear()
