"""The forecast walkthrough: train over HTTP, compare with the naive forecast, forecast tomorrow.

    python examples/forecast/walkthrough.py

Needs ``vega_datasets`` installed (its Seattle weather CSV is the data). Uses the embedded
defaults: local folder storage (``file://.nubes``) and the local server on loopback.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("NUBES_LOG_LEVEL", "warning")

from rich.console import Console
from rich.table import Table

from nubes.adapters.local import make_server
from nubes.core.loader import load_app

HERE = Path(__file__).resolve().parent
console = Console()


def call(base: str, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def main() -> int:
    app = load_app(f"{HERE / 'app.py'}:app")
    server = make_server(app, "127.0.0.1", 0)
    server.start_background()
    base = server.url
    console.print(f"[bold]nubes forecast[/]: app {app.name!r} on {base} · storage {app.storage_uri}\n")
    try:
        status, answer = call(base, "POST", "/train")
        assert status == 200, answer
        h = answer["holdout"]
        console.print(f"POST /train → {status}: version {answer['version']}, {answer['cv']}, "
                      f"best {answer['best_params']}, CV RMSE per fold {[round(x, 2) for x in answer['cv_rmse']]}")
        table = Table(title=f"Next-day maximum, held-out {h['days']} days {h['from']} .. {h['to']} (°C)", title_justify="left")
        for col in ("forecast", "RMSE", "MAE", "R²"):
            table.add_column(col)
        for label, key in (("gradient boosting", "gradient_boosting"), ("naive: tomorrow = today", "naive")):
            m = answer[key]
            table.add_row(label, f"{m['rmse']:.3f}", f"{m['mae']:.3f}", f"{m['r2']:.3f}")
        console.print(table)
        console.print(f"skill over the naive forecast: {answer['skill']:.1%}; promoted to production: {answer['promoted']}")

        status, fc = call(base, "GET", "/forecast")
        console.print(f"\nGET /forecast → {status}: {fc.get('date')}: {fc.get('temp_max')} °C "
                      f"(after {fc.get('today', {}).get('temp_max')} °C on {fc.get('today', {}).get('date')})")
    finally:
        server.shutdown()
        server.server_close()
    console.print("\n[bold green]It works.[/] Next: nubes models examples/forecast/app.py show temp-max-tomorrow")
    return 0 if answer["promoted"] else 1


if __name__ == "__main__":
    sys.exit(main())
