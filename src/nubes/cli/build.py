"""``nubes build``: deployable artifacts for one cloud, with a progress display and a size report."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from nubes.cli.common import AppArg, cli, err, fail

TOP_PACKAGES = 8


class _RichSteps:
    """The build's progress steps drawn on stderr (a spinner, or a bar when the step has a total)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    @contextlib.contextmanager
    def step(self, title: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        task = self.progress.add_task(title, total=total)
        try:
            yield lambda n: self.progress.advance(task, n)
        finally:
            self.progress.update(task, total=total or 1, completed=total or 1)


@cli.command()
def build(
    app: AppArg,
    cloud: Annotated[str, typer.Option("--cloud", help="aws, gcp or azure")],
    arch: Annotated[str | None, typer.Option("--arch", help="x86_64 or arm64 (default: the cloud's first)")] = None,
    python: Annotated[str, typer.Option("--python", help="the runtime's Python version")] = "3.12",
    out: Annotated[Path | None, typer.Option("--out", help="output folder (default build/APPNAME-CLOUD)")] = None,
    format: Annotated[str | None, typer.Option("--format", help="zip, or image (AWS: a container build context)")] = None,
    storage: Annotated[str | None, typer.Option("--storage", metavar="URI",
                                                help="the function's home store, e.g. s3://bucket/prefix")] = None,
    bytecode: Annotated[bool, typer.Option("--bytecode/--no-bytecode", help="compile .pyc with the target Python")] = True,
    split: Annotated[bool, typer.Option("--split/--no-split", help="split an app over the size limit into functions")] = True,
    check: Annotated[bool, typer.Option("--check/--no-check", help="import each function in a clean Python")] = True,
) -> None:
    """Build the app for a cloud: wheels for the target platform, slimmed, bytecode, one zip (or a split
    by footprint when it is over the limit), manifest.json and a size report."""
    from nubes.deploy.build import BuildError, BuildOptions
    from nubes.deploy.build import build as run
    from nubes.errors import NubesError

    options = BuildOptions(app, cloud, arch=arch, python=python, out=out, format=format, storage=storage,
                           bytecode=bytecode, split=split, check=check)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, transient=False) as progress:
            result = run(options, _RichSteps(progress))
    except BuildError as exc:
        if exc.sizes:
            _oversize(exc.sizes)
        fail(str(exc))
    except NubesError as exc:
        fail(str(exc))
    report(result.manifest, Console())


def _oversize(sizes: list[tuple[int, Any]]) -> None:
    table = Table(title="Over the limit", title_justify="left")
    table.add_column("routes")
    table.add_column("MB", justify="right")
    table.add_column("packages")
    for size, unit in sizes:
        table.add_row(unit.key, f"{size / 1e6:.1f}", ", ".join(sorted(unit.dists)[:8]))
    err.print(table)


def report(manifest: dict[str, Any], console: Console) -> None:
    """The size report: each artifact against its limit, then its largest packages."""
    summary = Table(title=f"{manifest['app']} for {manifest['cloud']} ({manifest['format']}, Python {manifest['python']}, "
                          f"{manifest['arch']})", title_justify="left")
    for column, justify in (("artifact", "left"), ("routes", "right"), ("unzipped MB", "right"), ("zipped MB", "right"),
                            ("limit MB", "right"), ("fits", "left")):
        summary.add_column(column, justify=justify)  # type: ignore[arg-type]
    for fn in manifest["functions"]:
        limit = f"{fn['limit_bytes'] / 1e6:.1f}" if fn.get("limit_bytes") else "—"
        fits = "yes" + (" (upload via S3)" if fn.get("upload") == "s3" else "") if fn["fits"] else "NO"
        summary.add_row(Path(fn["path"]).name, str(len(fn["routes"]) + len(fn["events"])), f"{fn['unzipped_bytes'] / 1e6:.1f}",
                        f"{fn['zipped_bytes'] / 1e6:.1f}", limit, fits)
    console.print(summary)
    vendored = manifest.get("vendored", True)
    for fn in manifest["functions"]:
        where = Path(fn["path"]).name if vendored else "requirements.txt (installed by the cloud's build)"
        table = Table(title=f"Largest packages in {where}", title_justify="left")
        table.add_column("package")
        table.add_column("version")
        table.add_column("MB", justify="right")
        table.add_column("share", justify="right")
        total = max(sum(p["unzipped_bytes"] for p in fn["packages"]), 1)
        for p in fn["packages"][:TOP_PACKAGES]:
            table.add_row(p["name"], p["version"], f"{p['unzipped_bytes'] / 1e6:.1f}", f"{100 * p['unzipped_bytes'] / total:.0f}%")
        rest = fn["packages"][TOP_PACKAGES:]
        if rest:
            table.add_row(f"{len(rest)} more", "", f"{sum(p['unzipped_bytes'] for p in rest) / 1e6:.1f}", "")
        console.print(table)
    slimmed = sum(manifest["slimmed_bytes"].values())
    if slimmed:
        console.print("slimmed: " + ", ".join(f"{k} −{v / 1e6:.1f} MB" for k, v in manifest["slimmed_bytes"].items()))
    for note in manifest["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"manifest: {Path(manifest['path']).parent if not manifest['split'] else manifest['path']}/manifest.json")
