"""``nubes deploy | destroy | status | export APP --cloud aws|gcp|azure``: wiring for :mod:`nubes.deploy`.

Exit codes: 0 done (or nothing to do), 1 the cloud refused or could not be reached, 2 the command or
the config is wrong (the message names the fix). Plans go to stdout; progress to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from nubes.cli.common import AppArg, cli, err, fail, load
from nubes.errors import ConfigError, NubesError

T = TypeVar("T")

CloudOpt = Annotated[str, typer.Option("--cloud", help="aws, gcp or azure")]
ConfigOpt = Annotated[str | None, typer.Option("--config", help="nubes.toml to read (default: beside the app, else ./nubes.toml)")]
ArtifactOpt = Annotated[str | None, typer.Option("--artifact", help="manifest.json of `nubes build` (or its directory)")]
FormatOpt = Annotated[str, typer.Option("--format", help="table or json")]


def _out() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _checked(call: Callable[[], T], offline: Callable[[Exception], T] | None = None) -> T:
    """``call()``, its errors turned into messages: the cloud's state unreadable exits 1 (unless ``offline``
    answers instead), any other nubes error exits 2 (the message names the fix)."""
    from nubes.deploy.engine import StateUnavailable

    try:
        return call()
    except StateUnavailable as exc:
        if offline is None:
            fail(str(exc), code=1)
        return offline(exc)
    except NubesError as exc:
        fail(str(exc))


def _open(app: str, cloud: str, config: str | None, artifact: str | None) -> Any:
    from nubes.deploy.engine import Deployment

    application = load(app)
    return _checked(lambda: Deployment.open(application, cloud, config=config, artifact=artifact))


def _build_or_reuse(spec: str, deployment: Any) -> Any:
    """``deployment`` with an artifact for its app and cloud: the one in the default build folder when it
    was built from exactly the current inputs (``inputs_sha256``), else a fresh ``nubes build``. The app
    already loaded is reused (its file is executed once per command)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from nubes.cli.build import _RichSteps, report
    from nubes.deploy.build import BuildOptions
    from nubes.deploy.build import build as run_build
    from nubes.deploy.build.engine import prepare

    cloud, target = deployment.cloud, deployment.target
    options = BuildOptions(spec, cloud, arch=target.architecture, storage=target.storage)
    setup = _checked(lambda: prepare(options, deployment.app))
    manifest = setup.out / "manifest.json"
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            found = {}
        if found.get("inputs_sha256") == setup.inputs:
            err.print(f"reusing the artifact built from the same inputs: {escape(str(manifest))}")
            return _checked(lambda: deployment.with_artifact(manifest))
    err.print(f"building the artifact for {cloud} (nothing built from these inputs yet)")
    options.out = setup.out
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err) as progress:
            result = run_build(options, _RichSteps(progress), setup=setup)
    except NubesError as exc:
        fail(f"the build failed, so nothing was deployed: {exc}")
    report(result.manifest, err)  # stderr: stdout carries the plan
    return _checked(lambda: deployment.with_artifact(result.manifest_path))


def _format(value: str) -> None:
    if value not in ("table", "json"):
        fail(f"--format {value!r} is not one of: table, json")


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        fail("not a terminal, so nothing was changed: pass --yes to apply without a prompt, or --dry-run to only plan")
    if not typer.confirm(question, default=False, err=True):
        err.print("nothing was changed")
        raise typer.Exit(0)


def _show(plan: Any, cloud: str, format: str, verbose: bool = False) -> None:
    """The plan on stdout (a table, or JSON with --format json); its notes and kept resources on stderr."""
    from nubes.deploy import render

    if format == "json":
        print(render.plan_json(plan))
        return
    if plan.empty and not verbose:
        _out().print(f"{plan.name} on {cloud}: no changes ({plan.counts()['unchanged']} resources up to date)")
    else:
        _out().print(render.plan_table(plan, verbose=verbose))
    for note in plan.notes:
        err.print(f"note: {escape(note)}")
    for kept in plan.kept:
        err.print(escape(f"kept (holds data): {kept.kind} {kept.name}"))


def _apply(deployment: Any, plan: Any) -> list[Any]:
    def step(change: Any, phase: str) -> None:
        if phase == "start":
            err.print(escape(f"{change.action} {change.resource.kind} {change.resource.name} ..."), end="")
        else:
            err.print(" done")

    try:
        return list(deployment.apply(plan, step))
    except ConfigError as exc:
        fail(str(exc))
    except Exception as exc:  # the cloud refused: what was applied stays; the next run finishes the rest
        err.print("")
        fail(f"{type(exc).__name__}: {exc}\nwhat was applied before this step stays; fix the cause and run the same "
             "command again to finish (each step is safe to repeat)", code=1)


@cli.command()
def deploy(
    app: AppArg,
    cloud: CloudOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="plan only; change nothing")] = False,
    format: FormatOpt = "table",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="apply without asking")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list unchanged resources too")] = False,
    config: ConfigOpt = None,
    artifact: ArtifactOpt = None,
) -> None:
    """Plan the app's resources on CLOUD against what is deployed, print the plan, then apply it.

    Without --artifact, applying builds the artifact first (or reuses the one built from the same inputs)."""
    _format(format)
    deployment = _open(app, cloud, config, artifact)
    if artifact is None and not dry_run:
        deployment = _build_or_reuse(app, deployment)

    def offline(exc: Exception) -> Any:
        err.print(f"[yellow]warning:[/] {escape(str(exc))}; planning as if nothing were deployed")
        return _checked(lambda: deployment.plan(offline=True))

    plan = _checked(deployment.plan, offline if dry_run else None)
    _show(plan, cloud, format, verbose)
    if dry_run:
        return
    if plan.empty:
        err.print("nothing to change")
        return
    _confirm(yes, f"apply {len(plan.pending)} change(s) to {cloud}?")
    applied = _apply(deployment, plan)
    try:
        url = deployment.url(plan, applied)
    except NubesError as exc:  # applied: only the URL is unknown
        err.print(f"[yellow]warning:[/] the URL could not be read ({escape(str(exc))}); `nubes status` shows it")
        url = None
    err.print(escape(f"deployed {deployment.target.name} to {cloud}" + (f": {url}" if url else "")))


@cli.command()
def destroy(
    app: AppArg,
    cloud: CloudOpt,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be removed; change nothing")] = False,
    format: FormatOpt = "table",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="remove without asking")] = False,
    config: ConfigOpt = None,
) -> None:
    """Remove what nubes created for the app on CLOUD (tagged with its name); buckets and queues are kept."""
    _format(format)
    deployment = _open(app, cloud, config, None)
    plan = _checked(deployment.destroy_plan)
    _show(plan, cloud, format, verbose=True)
    if dry_run or plan.empty:
        if plan.empty:
            err.print("nothing deployed")
        return
    _confirm(yes, f"remove {len(plan.pending)} resource(s) from {cloud}?")
    _apply(deployment, plan)
    err.print(f"destroyed {deployment.target.name} on {cloud}")


@cli.command()
def status(app: AppArg, cloud: CloudOpt, format: FormatOpt = "table", config: ConfigOpt = None,
           artifact: ArtifactOpt = None) -> None:
    """The deployed version, URL and drift (what differs from the app and its config)."""
    from nubes.deploy import render

    _format(format)
    deployment = _open(app, cloud, config, artifact)
    state = _checked(deployment.status)
    if format == "json":
        print(json.dumps(state, indent=2, default=str))
    else:
        _out().print(render.status_table(state))


@cli.command("export")
def export(
    app: AppArg,
    cloud: CloudOpt,
    format: Annotated[str, typer.Option("--format", help="aws: sam | cloudformation | terraform; gcp, azure: terraform")],
    out: Annotated[str | None, typer.Option("--out", "-o", help="write to this file instead of stdout")] = None,
    config: ConfigOpt = None,
    artifact: ArtifactOpt = None,
) -> None:
    """The same resources `nubes deploy` manages, as a template for your own pipeline (JSON)."""
    deployment = _open(app, cloud, config, artifact)
    document = _checked(lambda: deployment.export(format))
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    if out:
        from nubes.deploy.build.archive import atomic

        try:
            with atomic(Path(out)) as file:
                file.write(text.encode("utf-8"))
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror or exc}; pass -o a path in an existing, writable folder")
        err.print(f"wrote {escape(out)}")
    else:
        sys.stdout.write(text)
