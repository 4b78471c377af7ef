"""The quickstart tour: serve the wines app on loopback and ask it real questions over HTTP.

    python examples/quickstart/tour.py

Uses the embedded defaults: local folder storage (``file://.nubes``) and the local server.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("NUBES_LOG_LEVEL", "warning")  # the tour prints answers, not log lines

from nubes.core.auth import hash_key, new_key

# The built-in /_nubes/ routes need the admin role: the tour mints a key for itself. Only the key's hash
# is configured (here by environment; in a project, under [auth.api_keys] in nubes.toml).
ADMIN_KEY = new_key()
os.environ["NUBES_API_KEYS"] = json.dumps({hash_key(ADMIN_KEY): {"id": "tour", "roles": ["admin"]}})

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from nubes.adapters.local import make_server  # noqa: E402
from nubes.core.loader import load_app  # noqa: E402

HERE = Path(__file__).resolve().parent
console = Console()


def call(base: str, method: str, path: str, body: dict | None = None, accept: str | None = None,
         key: str | None = None) -> tuple[int, str, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    if key:
        request.add_header("X-API-Key", key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read()


def show(title: str, rows: list[dict]) -> None:
    table = Table(title=title, title_justify="left")
    for column in rows[0]:
        table.add_column(column, justify="right" if isinstance(rows[0][column], (int, float)) else "left")
    for row in rows:
        table.add_row(*[str(v) for v in row.values()])
    console.print(table)


def main() -> int:
    app = load_app(f"{HERE / 'app.py'}:app")
    server = make_server(app, "127.0.0.1", 0)
    server.start_background()
    base = server.url
    console.print(f"[bold]nubes quickstart[/]: app {app.name!r} served on {base} · storage {app.storage_uri}\n")
    try:
        status, _, body = call(base, "GET", "/cultivars")
        console.print(f"GET /cultivars → {status}")
        show("How the three cultivars differ (averages)", json.loads(body))

        status, _, body = call(base, "GET", "/correlation?x=flavanoids&y=total_phenols")
        answer = json.loads(body)
        console.print(f"\nGET /correlation?x=flavanoids&y=total_phenols → {status}")
        console.print(f"  flavanoids vs total phenols: r = {answer['overall']} overall; by cultivar {answer['by_cultivar']}")

        status, _, body = call(base, "GET", "/wines/top?by=proline&n=3")
        console.print(f"\nGET /wines/top?by=proline&n=3 → {status}")
        show("Most proline", json.loads(body))

        status, ctype, body = call(base, "GET", "/wines?cultivar=cultivar_3&min_alcohol=14&limit=5", accept="text/csv")
        console.print(f"\nGET /wines?cultivar=cultivar_3&min_alcohol=14 (Accept: text/csv) → {status} {ctype}")
        console.print(body.decode().rstrip(), markup=False, highlight=False)

        profile = {"alcohol": 13.2, "flavanoids": 2.9, "color_intensity": 5.0, "proline": 1100}
        status, _, body = call(base, "POST", "/wines/similar", profile)
        console.print(f"\nPOST /wines/similar {json.dumps(profile)} → {status}")
        show("Closest wines", json.loads(body))

        status, ctype, body = call(base, "GET", "/wines/top?by=sweetness")
        console.print(f"\nGET /wines/top?by=sweetness → {status} {ctype}")
        console.print(f"  {json.loads(body)['detail']}", markup=False)

        status, _, _ = call(base, "GET", "/_nubes/openapi.json")
        console.print(f"\nGET /_nubes/openapi.json without a key → {status} (built-in routes need the admin role)")
        status, _, body = call(base, "GET", "/_nubes/openapi.json", key=ADMIN_KEY)
        console.print(f"GET /_nubes/openapi.json with X-API-Key → {status}: {len(json.loads(body)['paths'])} paths described")
    finally:
        server.shutdown()
        server.server_close()
    console.print(
        "\n[bold green]It works.[/] Next:\n"
        "  nubes routes examples/quickstart/app.py\n"
        "  nubes invoke examples/quickstart/app.py GET /wines/top -q by=alcohol -q n=3\n"
        "  nubes serve examples/quickstart/app.py   # then open http://127.0.0.1:8000/cultivars"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
