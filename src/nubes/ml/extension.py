"""The ML extension: what :mod:`nubes.ml` adds to an app (see :mod:`nubes.core.extensions`).

* ``app.models`` and ``ctx.models``: the model registry in the app's home store
  (:class:`~nubes.ml.registry.ModelRegistry`), opened on first use;
* ``GET /_nubes/models``, ``GET /_nubes/models/{name}``, ``POST /_nubes/models/{name}/predict``
  (unless ``App(models=False)``);
* the command ``nubes models``.

Importing this module loads neither scikit-learn nor skops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nubes.core.context import Context  # at run time: binding resolves the routes' annotations
from nubes.core.extensions import Command

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.ml.registry import ModelRegistry


class MLExtension:
    """The model registry and the model routes for an app."""

    name = "ml"
    commands = (Command("models", "nubes.cli.models:app", "List, show and promote registered models."),)

    def setup(self, app: App) -> None:
        app.add_lazy_attribute("models", _registry)
        app.add_context_attribute("models", property(_ctx_models))
        if app.options.get("models", True):
            app.add_internal_route("/_nubes/models", ["GET"], _models_route, summary="The registered models")
            app.add_internal_route("/_nubes/models/{name}", ["GET"], _model_route, summary="One model's versions")
            app.add_internal_route("/_nubes/models/{name}/predict", ["POST"], _predict_route,
                                   summary="Predictions of a registered model")


def _registry(app: App) -> ModelRegistry:
    from nubes.ml.registry import ModelRegistry

    return ModelRegistry(app.storage, app=app)


def _ctx_models(ctx: Context) -> ModelRegistry:
    """The app's model registry (``ctx.app.models``): register, load, promote fitted models."""
    registry: ModelRegistry = ctx.app.models
    return registry


def _models_route(ctx: Context) -> dict[str, Any]:
    from nubes.ml.serving import list_models

    return list_models(ctx)


def _model_route(ctx: Context, name: str) -> dict[str, Any]:
    from nubes.ml.serving import describe_model

    return describe_model(ctx, name)


def _predict_route(ctx: Context, name: str, version: int | None = None, alias: str | None = None) -> dict[str, Any]:
    from nubes.ml.serving import predict

    return predict(ctx, name, version, alias)
