"""The ``nubes`` command. Wiring only: every command calls the library and prints its answer.

It needs the ``cli`` extra (typer, rich); ``import nubes`` and deployed functions never do.
"""


def main() -> None:
    try:
        from nubes.cli.main import main as run
    except ModuleNotFoundError as exc:
        if exc.name in ("typer", "rich", "packaging"):
            raise SystemExit(f"the nubes command needs {exc.name}: pip install 'nubes[cli]'") from None
        raise
    run()


__all__ = ["main"]
