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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from nubes.core.app import App


@dataclass(frozen=True)
class Command:
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
