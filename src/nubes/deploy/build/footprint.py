"""What each route imports: its footprint, derived from the code, never guessed.

A route's footprint is the set of third-party modules its code can import, found statically with
rapid type analysis over the app's and nubes' own Python code (the app is loaded, so names resolve
to the live objects they denote):

* a module's top-level imports always count (importing it runs them);
* a function counts the imports in its body and everything it references: functions are followed
  into their bodies, classes when they are instantiated (their ``__init__``) and then for every
  method name called anywhere on a receiver of unknown type (``x.query(...)`` reaches ``query`` of
  every class instantiated so far), attribute access on a receiver of known type (``self``, the
  handler's ``ctx``, a parameter annotated with a class, ``x = Class(...)``) reaches that member only;
* third-party code is not analysed: its distribution and that distribution's requirements count;
* imports of a table library inside ``nubes.core`` functions convert values (a DuckDB relation is
  encoded through Polars): they count for a route whose footprint already holds a table library
  (:data:`TABLES`); nubes.core's other lazy imports (PyJWT for token checks) count where reached.
  The ledger's compaction (:data:`WHERE_INSTALLED`) is treated the same way: it runs only in a
  function that has DuckDB anyway (the ledger checks), so it never adds DuckDB to a footprint.

What cannot be derived is reported, not guessed: an import by a computed name in the app's code is a
:attr:`Need.dynamic` place, which the build refuses unless ``nubes.toml`` declares that route's
footprint (``[build.footprints]``).
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nubes.deploy.build.footprint_ast import (
    _MISSING,
    _absolute,
    _annotation_class,
    _attr_or_module,
    _closure,
    _constructed,
    _dotted,
    _function_node,
    _import,
    _is_module,
    _module_tree,
    _nodes,
    _submodule,
    _top_level,
    _value,
)

TABLES = frozenset({"duckdb", "polars", "pyarrow"})
# nubes modules whose table-library imports run only where that library is installed already
WHERE_INSTALLED = frozenset({"nubes.metering.rollup"})
_STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
_NAMES_ON_ENTRY = ("__init__", "__post_init__", "__new__")
# App methods whose function arguments are registered, not called: route handlers (analysed as their own
# routes) and extension attributes (followed where code uses them)
REGISTRATIONS = frozenset({"_internal", "route", "add_internal_route", "add_context_attribute", "add_attribute",
                           "add_lazy_attribute"})


@dataclass
class Need:
    """Third-party modules a piece of code needs (with the first place that needs each) and the
    places that import by a computed name."""

    modules: dict[str, str] = field(default_factory=dict)
    dynamic: list[str] = field(default_factory=list)
    converters: dict[str, str] = field(default_factory=dict)  # nubes.core's value-driven imports
    missing: dict[str, str] = field(default_factory=dict)  # the app's imports of modules not installed here
    if_present: dict[str, str] = field(default_factory=dict)  # imports that run only where that library is

    def resolved(self) -> dict[str, str]:
        """The modules needed, converters included when a table library is among them (and the
        :data:`WHERE_INSTALLED` imports only when their own library is)."""
        out = dict(self.modules)
        if any(m.split(".")[0] in TABLES for m in out):
            for module, via in self.converters.items():
                out.setdefault(module, via)
        tops = {m.split(".")[0] for m in out}
        for module, via in self.if_present.items():
            if module.split(".")[0] in tops:
                out.setdefault(module, via)
        return out


class Analysis:
    """One rapid-type-analysis run; :meth:`fork` copies it so each route starts from the base."""

    def __init__(self, first_party: Callable[[str], bool], handlers: Iterable[Any] = (),
                 dynamic: Callable[[type, str], Any] | None = None) -> None:
        self.first_party = first_party
        # attributes an object resolves in __getattr__ (an app's extension attributes): (class, name) -> value or None
        self.dynamic = dynamic or (lambda cls, name: None)
        # route handlers are analysed as their own routes, not where the app registers them
        self.handlers = frozenset(getattr(inspect.unwrap(h), "__code__", None) for h in handlers) - {None}
        self.need = Need()
        self.done: set[Any] = set()  # code objects, module names and (class, member) pairs analysed
        self.classes: set[type] = set()
        self.names: set[str] = set()
        self.why: dict[str, str] = {}  # what reached each module / function first (for the plan's explanations)

    def fork(self) -> Analysis:
        other = Analysis(self.first_party, dynamic=self.dynamic)
        other.handlers = self.handlers
        other.need = Need(dict(self.need.modules), list(self.need.dynamic), dict(self.need.converters), dict(self.need.missing),
                          dict(self.need.if_present))
        other.done, other.classes, other.names = set(self.done), set(self.classes), set(self.names)
        other.why = dict(self.why)
        return other

    # -- what code is ours ---------------------------------------------------------------------
    def ours(self, module: str | None) -> bool:
        if not module:
            return False
        return module == "nubes" or module.startswith("nubes.") or self.first_party(module)

    def _third_party(self, module: str, via: str, *, converter: bool | str = False) -> None:
        top = module.split(".")[0]
        if not top or top in _STDLIB or self.ours(module) or not _is_module(top):
            return
        target = self.need.if_present if converter == "if_present" else self.need.converters if converter else self.need.modules
        target.setdefault(module, via)

    # -- modules -------------------------------------------------------------------------------
    def module(self, name: str, via: str) -> None:
        """Importing module ``name`` (its top-level code runs)."""
        if name.split(".")[0] in _STDLIB:
            return
        if not self.ours(name):
            self._third_party(name, via)
            return
        if ("module", name) in self.done:
            return
        self.done.add(("module", name))
        self.why.setdefault(name, via)
        module = _import(name)
        if module is None:
            return
        parent = name.rpartition(".")[0]
        if parent:
            self.module(parent, via)
        tree = _module_tree(getattr(module, "__file__", None))
        if tree is None:
            return
        self._walk(_top_level(tree), module.__dict__, {}, name, getattr(module, "__file__", name), via=name)

    def code(self, nodes: list[ast.AST], filename: str, *, via: str) -> None:
        """Top-level code that is not a module on the path (a generated entry file)."""
        self._walk(nodes, {}, {}, "", filename, via=via)

    # -- objects -------------------------------------------------------------------------------
    def reference(self, obj: Any, via: str) -> None:
        """Code that names ``obj`` may use it: follow it."""
        if isinstance(obj, types.ModuleType):
            self.module(obj.__name__, via)
        elif isinstance(obj, (staticmethod, classmethod)):
            self.reference(obj.__func__, via)
        elif isinstance(obj, functools.partial):
            self.reference(obj.func, via)
        elif isinstance(obj, types.MethodType):
            self.reference(obj.__func__, via)
        elif isinstance(obj, types.FunctionType):
            if self.ours(obj.__module__):
                self.function(obj, None, via)
            else:
                self._third_party(obj.__module__ or "", via)
        elif isinstance(obj, type):
            if self.ours(obj.__module__):
                self.module(obj.__module__, via)  # naming a class is not making one: see _call
            else:
                self._third_party(obj.__module__, via)
        elif isinstance(obj, types.BuiltinFunctionType):
            self._third_party(getattr(obj, "__module__", None) or "", via)
        elif obj is not None and not isinstance(obj, (str, bytes, int, float, bool, tuple, list, dict, set, frozenset)):
            cls = type(obj)
            if self.ours(cls.__module__):
                self.instantiate(cls, via)  # an existing instance of our class
            elif cls.__module__ not in ("builtins", "typing") and not cls.__module__.startswith("_"):
                self._third_party(cls.__module__, via)

    def instantiate(self, cls: type, via: str) -> None:
        """An instance of ``cls`` exists: its constructor runs and called method names reach it."""
        for klass in cls.__mro__:
            if klass in self.classes or not self.ours(klass.__module__):
                continue
            self.classes.add(klass)
            self.module(klass.__module__, via)
            for name in _NAMES_ON_ENTRY:
                self.member(klass, name, via)
            for name in sorted(self.names):
                self.member(klass, name, via)

    def member(self, cls: type, name: str, via: str) -> None:
        """Attribute ``name`` of ``cls`` is used."""
        if ("member", cls, name) in self.done:
            return
        self.done.add(("member", cls, name))
        try:
            attr = inspect.getattr_static(cls, name)
        except AttributeError:
            value = self.dynamic(cls, name)
            if value is not None:
                self.reference(value, via)  # a lazy attribute's factory, or the attribute's value
            return
        owner = next((k for k in cls.__mro__ if name in vars(k)), cls)
        if not self.ours(owner.__module__):
            return
        if isinstance(attr, property):
            for fn in (attr.fget, attr.fset):
                if fn is not None:
                    self.function(fn, owner, via)
        elif isinstance(attr, functools.cached_property):
            self.function(attr.func, owner, via)
        elif isinstance(attr, (staticmethod, classmethod)):
            self.function(attr.__func__, owner, via)
        elif isinstance(attr, types.FunctionType):
            self.function(attr, owner, via)
        else:
            self.reference(attr, via)

    def call_name(self, name: str, via: str) -> None:
        """``<unknown>.name`` is used: every instantiated class's member ``name`` may run."""
        if name in self.names:
            return
        self.names.add(name)
        for cls in sorted(self.classes, key=lambda c: (c.__module__, c.__qualname__)):
            self.member(cls, name, via)

    # -- functions -----------------------------------------------------------------------------
    def function(self, fn: Any, owner: type | None, via: str, *, first_param: type | None = None) -> None:
        fn = inspect.unwrap(fn)
        code = getattr(fn, "__code__", None)
        if code is None or code in self.done or (code in self.handlers and first_param is None):
            return
        self.done.add(code)
        module = getattr(fn, "__module__", None) or ""
        self.module(module, via)
        node = _function_node(code)
        if node is None:
            return
        env: dict[str, type] = {}
        bound: dict[str, Any] = {}  # a classmethod's first parameter is the class itself: cls(...) instantiates it
        params = [*node.args.posonlyargs, *node.args.args]
        kind = inspect.getattr_static(owner, fn.__name__, None) if owner is not None else None
        if owner is not None and params and isinstance(kind, classmethod):
            bound[params[0].arg] = owner
        elif owner is not None and params and not isinstance(kind, staticmethod):
            env[params[0].arg] = owner
        elif first_param is not None and params:
            env[params[0].arg] = first_param
        scope = {**_closure(fn), **fn.__globals__, **bound}
        for arg in params + node.args.kwonlyargs:
            if arg.arg not in env and arg.annotation is not None:
                cls = _annotation_class(arg.annotation, scope)
                if cls is not None:
                    env[arg.arg] = cls
        where = f"{Path(code.co_filename).name}:{fn.__qualname__}"
        self.why.setdefault(where, via)
        self._walk([*node.body, *node.decorator_list], scope, env, module, code.co_filename, via=where)

    # -- the walk ------------------------------------------------------------------------------
    def _walk(self, body: Sequence[ast.AST], scope: dict[str, Any], env: dict[str, type], module: str, filename: str,
              *, via: str) -> None:
        converter: bool | str = "if_present" if module in WHERE_INSTALLED else (module == "nubes.core" or module.startswith("nubes.core."))
        app_code = self.first_party(module)
        local: dict[str, Any] = {}
        nodes = list(_nodes(body))
        registered = {id(arg) for node in nodes if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr in REGISTRATIONS for arg in node.args if isinstance(arg, ast.Name)}
        for node in nodes:
            if id(node) in registered:
                continue  # a handler being registered: it is its own route
            if isinstance(node, (ast.Import, ast.ImportFrom)) and app_code:
                self._note_missing(node, module, filename)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self._import(alias.name, via, converter)
                    if self.ours(alias.name):
                        local[(alias.asname or alias.name).split(".")[0]] = _import(alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, module, filename)
                for alias in node.names:
                    self._import(base, via, converter)
                    if not self.ours(base):
                        if _submodule(base, alias.name):  # from google.cloud import tasks_v2: that distribution
                            self._import(f"{base}.{alias.name}", via, converter)
                        continue
                    obj = _attr_or_module(base, alias.name)
                    if obj is not None:
                        local[alias.asname or alias.name] = obj  # followed where the code uses the name
                        if isinstance(obj, types.ModuleType):
                            self.module(obj.__name__, via)
            elif isinstance(node, ast.Call):
                self._call(node, scope, local, via, app_code, filename)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                obj = local[node.id] if node.id in local else scope.get(node.id, _MISSING)
                if obj is not _MISSING:
                    self.reference(obj, via)
            elif isinstance(node, ast.Attribute):
                self._attribute(node, scope, local, env, via)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                self._bind(node, scope, local, env)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                self.call_name("__enter__", via)
                self.call_name("__exit__", via)
                for item in node.items:
                    if isinstance(item.optional_vars, ast.Name):
                        cls = _constructed(item.context_expr, scope, local)
                        if cls is not None:
                            env[item.optional_vars.id] = cls
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                self.call_name("__iter__", via)

    def _note_missing(self, node: ast.Import | ast.ImportFrom, module: str, filename: str) -> None:
        """The app's own code imports a module this machine cannot import: the build must say so (nubes'
        optional lazy imports of what is not installed are features the app cannot be using)."""
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [_absolute(node, module, filename)]
        for name in names:
            top = name.split(".")[0]
            if top and top not in _STDLIB and not self.ours(name) and not _is_module(top):
                self.need.missing.setdefault(name, f"{Path(filename).name}:{node.lineno}")

    def _import(self, name: str, via: str, converter: bool | str) -> None:
        if converter and not self.ours(name) and name.split(".")[0] in TABLES:
            self._third_party(name, via, converter=converter)
        else:
            self.module(name, via)

    def _call(self, node: ast.Call, scope: dict[str, Any], local: dict[str, Any], via: str, app_code: bool, filename: str) -> None:
        func = node.func
        dotted = _dotted(func)
        if dotted in ("importlib.import_module", "import_module", "__import__"):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self.module(arg.value, via)
            elif app_code:
                self.need.dynamic.append(f"{Path(filename).name}:{node.lineno}")
        target: Any = _MISSING
        if isinstance(func, ast.Name):
            target = local.get(func.id, scope.get(func.id, _MISSING))
        elif isinstance(func, ast.Attribute):
            holder = local.get(func.value.id, scope.get(func.value.id)) if isinstance(func.value, ast.Name) else None
            if isinstance(holder, types.ModuleType):
                target = getattr(holder, func.attr, _MISSING)
        if isinstance(target, type) and self.ours(target.__module__):
            self.instantiate(target, via)

    def _attribute(self, node: ast.Attribute, scope: dict[str, Any], local: dict[str, Any], env: dict[str, type], via: str) -> None:
        value = node.value
        if isinstance(value, ast.Name) and value.id in env:
            self.member(env[value.id], node.attr, via)
            return
        obj = _value(value, scope, local)
        if obj is _MISSING:
            self.call_name(node.attr, via)  # a receiver of unknown type
        elif isinstance(obj, types.ModuleType):
            target = getattr(obj, node.attr, _MISSING)
            if target is _MISSING and self.ours(obj.__name__):
                self.module(f"{obj.__name__}.{node.attr}", via)
            elif target is not _MISSING:
                self.reference(target, via)
        elif isinstance(obj, type):
            if self.ours(obj.__module__):
                self.member(obj, node.attr, via)
        elif self.ours(type(obj).__module__):
            self.instantiate(type(obj), via)
            self.member(type(obj), node.attr, via)
        # an attribute of a third-party or built-in object: its module is already counted

    def _bind(self, node: ast.Assign | ast.AnnAssign, scope: dict[str, Any], local: dict[str, Any], env: dict[str, type]) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if node.value is None:
            return
        cls = _constructed(node.value, scope, local)
        if cls is None and isinstance(node, ast.AnnAssign):
            cls = _annotation_class(node.annotation, {**scope, **local})
        for target in targets:
            if isinstance(target, ast.Name):
                if cls is not None:
                    env[target.id] = cls
                else:
                    env.pop(target.id, None)
