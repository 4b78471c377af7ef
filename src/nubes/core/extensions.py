"""The extension mechanism: how features attach to an app without the kernel importing them.

An extension is any object with a ``name`` and a ``setup(app)`` method (:class:`Extension`). In
``setup`` it may

* add routes under ``/_nubes/`` — ``app.add_internal_route(path, methods, fn, summary=...)``;
* add context attributes — ``app.add_context_attribute(name, value)`` where ``value`` is a function
  (becomes a method of ``ctx``) or a ``property``; per-invocation state goes in ``ctx.extension_state``
  and clean-up in ``ctx.on_finish(callback)``;
* add app attributes — ``app.add_attribute(name, value)`` or ``app.add_lazy_attribute(name, factory)``
  (``factory(app)`` runs once, on first access);
* add invocation hooks — ``app.hooks.append(hook)`` (:mod:`nubes.core.hooks`);
* declare CLI commands — its ``commands`` attribute, a sequence of :class:`Command` naming the
  ``module:function`` that implements each (a Typer command; the ``nubes`` CLI loads it lazily, so a
  deployed function never imports the CLI's libraries).

The built-in features use exactly this: :mod:`nubes.data` (catalog, ``ctx.sql/table/write``, checks,
lineage, the SQL endpoint), :mod:`nubes.ml` (``ctx.models``, the model routes) and
:mod:`nubes.metering` (the meter hook, costs and quotes). ``import nubes`` registers them as the
defaults (:func:`set_defaults`), so ``App(name)`` has all three; ``App(name, extensions=[...])`` picks
exactly the given ones and ``app.include(ext)`` adds one later (before the app serves).
An extension's ``setup`` runs once per app; including the same extension name twice is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from nubes.errors import ConfigError

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.context import Context


class Command(NamedTuple):
    """A CLI command an extension contributes: ``nubes <name> ...`` runs ``target`` (``module:function``)."""

    name: str
    target: str
    help: str = ""


@runtime_checkable
class Extension(Protocol):
    """What an app extension provides: a unique ``name`` and ``setup(app)`` (see the module docstring)."""

    name: str

    def setup(self, app: App) -> None: ...


_DEFAULTS: list[Callable[[], Extension]] = []


def set_defaults(factories: Iterable[Callable[[], Extension]]) -> None:
    """Set the extensions every ``App`` gets when it is not given ``extensions=`` (called by ``import nubes``)."""
    _DEFAULTS[:] = list(factories)


def defaults() -> list[Extension]:
    """Fresh instances of the default extensions."""
    return [factory() for factory in _DEFAULTS]


def commands(extensions: Sequence[Extension] | None = None) -> list[Command]:
    """The CLI commands declared by ``extensions`` (default: the default extensions)."""
    found: list[Command] = []
    for ext in defaults() if extensions is None else extensions:
        found.extend(getattr(ext, "commands", ()))
    return found


class Extensible:
    """The extension API of :class:`nubes.App` (see the module docstring)."""

    name: str
    extensions: dict[str, Extension]
    context_class: type[Context]
    _attributes: dict[str, Any]
    _lazy: dict[str, Callable[[Any], Any]]
    _context_attributes: dict[str, Any]
    _lock: Any
    _internal: Callable[..., None]

    def include(self, extension: Extension) -> Any:
        """Attach ``extension`` (see :mod:`nubes.core.extensions`): its ``setup(self)`` runs now."""
        name = getattr(extension, "name", None)
        if not name or not callable(getattr(extension, "setup", None)):
            raise ConfigError(f"{extension!r} is not an extension: it needs a name and a setup(app) method")
        if name in self.extensions:
            raise ConfigError(f"extension {name!r} is already included in app {self.name!r}")
        self.extensions[name] = extension
        extension.setup(self)  # type: ignore[arg-type]  # the mixin is only ever part of App
        return self

    def add_internal_route(self, path: str, methods: Iterable[str], fn: Callable[..., Any], **kw: Any) -> None:
        """Register a built-in route under ``/_nubes/`` (for extensions)."""
        from nubes.core.app import INTERNAL_PREFIX

        if not path.startswith(INTERNAL_PREFIX):
            raise ConfigError(f"internal route {path!r} must start with {INTERNAL_PREFIX}")
        self._internal(path, list(methods), fn, **kw)

    def add_attribute(self, name: str, value: Any) -> None:
        """Make ``value`` reachable as ``app.<name>`` (for extensions)."""
        self._claim(name)
        self._attributes[name] = value

    def add_lazy_attribute(self, name: str, factory: Callable[[Any], Any]) -> None:
        """Make ``factory(app)`` reachable as ``app.<name>``, built once on first access (for extensions)."""
        self._claim(name)
        self._lazy[name] = factory

    def add_context_attribute(self, name: str, value: Any) -> None:
        """Give every handler's ``ctx`` an attribute ``name``: a function becomes a method, or a ``property``."""
        from nubes.core.context import Context

        if hasattr(Context, name) or name in self._context_attributes:
            raise ConfigError(f"context attribute {name!r} is already defined")
        self._context_attributes[name] = value
        self.context_class = type("Context", (Context,), {"__slots__": (), **self._context_attributes})

    def _claim(self, name: str) -> None:
        if name in self.__dict__ or hasattr(type(self), name) or name in self._attributes or name in self._lazy:
            raise ConfigError(f"app attribute {name!r} is already defined")

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: the attributes extensions added
        if name.startswith("__") or "_attributes" not in self.__dict__:
            raise AttributeError(name)
        try:
            return self._attributes[name]
        except KeyError:
            pass
        factory = self._lazy.get(name)
        if factory is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        with self._lock:
            if name not in self._attributes:
                self._attributes[name] = factory(self)
        return self._attributes[name]

