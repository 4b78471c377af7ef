"""Helpers for the Azure adapter tests: index a FunctionApp once and check it the way the worker loads it."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import meta

from nubes.core.app import App
from nubes.core.loader import load_app

APPS = Path(__file__).resolve().parent.parent / "apps"
CONTRACT_APP = APPS / "contract_app.py"
EVENTS_APP = APPS / "azure_events_app.py"


class Indexed:
    """A FunctionApp indexed once (``get_functions()`` may be called only once per app), by name."""

    def __init__(self, fa: func.FunctionApp) -> None:
        self.functions = {f.get_function_name(): f for f in fa.get_functions()}

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self.functions[name].get_user_function()

    def bindings(self, name: str) -> list[dict[str, Any]]:
        return json.loads(self.functions[name].get_function_json())["bindings"]

    def trigger(self, name: str) -> dict[str, Any]:
        (trigger,) = [b for b in self.bindings(name) if b["direction"] == "IN"]
        return trigger

    def named(self, prefix: str) -> list[str]:
        return sorted(n for n in self.functions if n.startswith(prefix))


def fresh(path: Path) -> App:
    """A freshly imported app (its module re-executed), as the worker imports it in a new process."""
    return load_app(f"{path}:app")


def assert_worker_loads(fn: func.Function) -> None:
    """The checks the Python worker makes when it loads a function (functions.Registry.add_function)."""
    user = fn.get_user_function()
    params = dict(inspect.signature(user).parameters)
    hints = typing.get_type_hints(user)
    bindings = {b["name"]: b for b in json.loads(fn.get_function_json())["bindings"]}
    ret = bindings.pop("$return", None)
    if "context" in params and "context" not in bindings:
        params.pop("context")
        assert hints["context"].__name__ == "Context"
    assert set(params) == set(bindings), (set(params), set(bindings))
    for name, binding in bindings.items():
        converter = meta.get_binding_registry().get(binding["type"])
        assert converter is not None, binding["type"]
        assert converter.check_input_type_annotation(hints[name]), (name, hints[name])
    if ret is not None:
        converter = meta.get_binding_registry().get(ret["type"])
        assert converter.check_output_type_annotation(hints["return"])
