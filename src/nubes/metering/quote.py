"""Quotes: what one invocation will cost on each provider, before it runs.

Three methods, tried in this order; the answer says which one it used:

* ``history`` — the route's own records in the ledger (same route and method; same path preferred):
  warm durations (median; low/high from their spread, cold starts only widen ``high``), storage
  operations (median per kind) and memory per provider. When the route read catalog datasets
  (its lineage says which), their size *now* is read with HEAD/LIST only (no data) and compared
  with their size then; durations and operations are scaled by that ratio (half of the duration
  assumed proportional to bytes) — the method is then ``history+sizes``.
* ``sample`` — no history: the request runs in a sandbox on a small slice of every dataset it
  reads (the first rows of each object, written with the original's rows per row group), at two
  slice sizes after a warm-up; duration and storage operations are fitted as ``a + b * fraction``
  and extrapolated to the whole dataset. The sandbox reads the real stores but writes only to
  memory (catalog datasets, the home store, any URI), records no ledger and leaves the real catalog
  untouched. Checks are not run in the sandbox.
* ``sizes`` — when the sample run fails: dataset sizes (HEAD/LIST) at a nominal scan rate.

Each estimate is priced with the meter's own arithmetic (:func:`~nubes.metering.compute.price`):
``{"estimates": [{"provider", "plan", "low_usd", "expected_usd", "high_usd", "method", ...}], ...}``.
Memory per provider: ``memory_mb`` if given, else the memory the route ran with on that provider
(history), else the metering ``memory_mb`` setting, else the provider's default (Lambda 128 MB,
Cloud Functions 256 MiB, Azure Consumption the observed peak, Flex 2,048 MB).
"""

from __future__ import annotations

import copy
import math
import statistics
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nubes.errors import ConfigError, HTTPError, NotFound
from nubes.metering.ledger import STORAGE_OPS
from nubes.metering.pricing import Usage, price

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.hooks import Invocation
    from nubes.core.request import Request
    from nubes.data.catalog import Dataset
    from nubes.storage.base import ObjectInfo, ObjectStore

TARGETS: tuple[tuple[str, str], ...] = (("aws", "lambda"), ("gcp", "gen2"), ("azure", "consumption"), ("azure", "flex"))
SAMPLE_BYTES = 2 * 1024 * 1024  # bytes of the largest dataset in the smaller slice
SCAN_BYTES_PER_S = 200e6  # the ``sizes`` method's nominal rate
HISTORY_LIMIT = 200


def quote(
    app: App,
    method: str,
    path: str,
    *,
    query: Sequence[tuple[str, str]] | None = None,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] | None = None,
    memory_mb: int | None = None,
    providers: Iterable[str] | None = None,
    method_hint: str | None = None,
) -> dict[str, Any]:
    """Estimate the cost of ``method path`` on each provider (see the module docstring).

    ``method_hint`` forces ``history``, ``sample`` or ``sizes``.
    """
    from nubes.core.request import Request
    from nubes.metering import meter_of

    verb = method.upper()
    raw_path, _, qs = path.partition("?")
    pairs = list(query or [])
    if qs:
        from urllib.parse import parse_qsl

        pairs = parse_qsl(qs, keep_blank_values=True) + pairs
    hdrs = list(headers or [])
    if body and not any(k.lower() == "content-type" for k, _ in hdrs):
        hdrs.append(("Content-Type", "application/json"))
    hdrs.append(("Content-Length", str(len(body))))
    request = Request(verb, raw_path, query=pairs or None, headers=hdrs, body=body)
    try:
        route, _ = app.router.match(verb, request.raw_path)
    except HTTPError as exc:
        raise ConfigError(f"no route answers {verb} {raw_path}: {exc}") from None
    meter = meter_of(app)
    meter.flush(timeout=2.0)
    from nubes.core import clouds

    wanted = set(providers or clouds.names())
    unknown = wanted - set(clouds.names())
    if unknown:
        raise ConfigError(f"unknown provider(s) {sorted(unknown)}; use aws, gcp, azure")
    if method_hint not in (None, "history", "sample", "sizes"):
        raise ConfigError(f"method must be history, sample or sizes, not {method_hint!r}")

    basis: dict[str, Any] | None = None
    if method_hint in (None, "history"):
        basis = _from_history(app, route.path, verb, request.path)
        if basis is None and method_hint == "history":
            raise ConfigError(f"no ledger history for {verb} {route.path}; run it first or use the sample method")
    if basis is None and method_hint in (None, "sample"):
        try:
            basis = _from_sample(app, request)
        except Exception as exc:
            if method_hint == "sample":
                raise
            app.log.warning("quote: sample run failed; estimating from dataset sizes", error=f"{type(exc).__name__}: {exc}")
            basis = None
    if basis is None:
        basis = _from_sizes(app, route)

    settings = meter.settings
    estimates = []
    for provider, plan in TARGETS:
        if provider not in wanted:
            continue
        memory = memory_mb or basis["memory"].get(provider) or settings.memory_mb
        costs = {}
        for label, duration in (("low", basis["low_ms"]), ("expected", basis["expected_ms"]), ("high", basis["high_ms"])):
            ops = basis["ops"][label]
            usage = Usage(duration, memory, basis.get("peak_rss_mb"), basis.get("architecture"), True, ops, True)
            costs[label] = price(usage, provider, plan, book=meter.book)
        exp = costs["expected"]
        estimates.append({
            "provider": provider, "plan": plan,
            "low_usd": min(c.total_usd for c in costs.values()),
            "expected_usd": exp.total_usd,
            "high_usd": max(c.total_usd for c in costs.values()),
            "method": basis["method"],
            "memory_mb": exp.billed_memory_mb,
            "duration_ms": round(basis["expected_ms"], 3),
            "billed_duration_ms": exp.billed_duration_ms,
            "components": {"compute": exp.compute_usd, "request": exp.request_usd, "gateway": exp.gateway_usd,
                           "storage": exp.storage_usd},
        })
    return {
        "app": app.name, "method": verb, "path": path, "route": route.path, "basis": basis["method"],
        "detail": basis.get("detail", {}), "datasets": basis.get("datasets", {}), "estimates": estimates,
    }


# -- history --------------------------------------------------------------------------------------
def _from_history(app: App, route: str, method: str, path: str) -> dict[str, Any] | None:
    from nubes.metering.bills import ledger_view

    with ledger_view(app.storage) as con:
        cur = con.execute(
            f"""SELECT request_id, path, provider, plan, memory_mb, duration_ms, cold_start, peak_rss_mb, architecture,
                       {", ".join(f"ops_{op}" for op in STORAGE_OPS)}, bytes_read
                FROM ledger WHERE route = ? AND method = ? AND kind = 'http'
                ORDER BY start_time DESC LIMIT {HISTORY_LIMIT}""", [route, method])
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    if not rows:
        return None
    same = [r for r in rows if r["path"] == path]
    rows = same or rows
    warm = [r for r in rows if not r["cold_start"]] or rows
    durations = sorted(r["duration_ms"] for r in warm)
    expected = statistics.median(durations)
    low = _pct(durations, 0.1)
    high = max(_pct(durations, 0.9), max(r["duration_ms"] for r in rows))
    ops = {op: statistics.median(r[f"ops_{op}"] or 0 for r in warm) for op in STORAGE_OPS}
    memory: dict[str, float] = {}
    for r in rows:
        if r["memory_mb"] and r["provider"] not in memory:
            memory[r["provider"]] = r["memory_mb"]
    basis: dict[str, Any] = {
        "method": "history", "expected_ms": expected, "low_ms": low, "high_ms": high,
        "ops": {"low": ops, "expected": ops, "high": {op: max(r[f"ops_{op}"] or 0 for r in rows) for op in STORAGE_OPS}},
        "memory": memory, "peak_rss_mb": statistics.median(r["peak_rss_mb"] or 0 for r in warm) or None,
        "architecture": warm[0]["architecture"],
        "detail": {"records": len(rows), "warm": len(warm), "same_path": bool(same)},
    }
    ratio, datasets = _size_ratio(app, [r["request_id"] for r in warm[:20]])
    basis["datasets"] = datasets
    if ratio is not None and abs(ratio - 1) > 0.02:
        basis["method"] = "history+sizes"
        basis["detail"]["size_ratio"] = round(ratio, 4)
        scale = 0.5 + 0.5 * ratio
        basis["expected_ms"] *= scale
        basis["low_ms"] = min(low, low * ratio)
        basis["high_ms"] = max(high, high * ratio)
        basis["ops"] = {k: {op: (math.ceil(n * ratio) if op == "get" else n) for op, n in v.items()}
                        for k, v in basis["ops"].items()}
    return basis


def _size_ratio(app: App, request_ids: list[str]) -> tuple[float | None, dict[str, Any]]:
    """(current size / size when the history ran) of the datasets the route read, from lineage + HEAD/LIST."""
    from nubes.data.catalog import resolve
    from nubes.data.lineage import history

    if not request_ids:
        return None, {}
    wanted = set(request_ids)
    then: dict[str, list[int]] = {}
    seen = 0
    for entry in history(app.storage, limit=2000):
        ids = {entry.get("request_id"), *entry.get("request_ids", [])}
        if not ids & wanted:
            continue
        for read in entry.get("reads", []):
            then.setdefault(read["dataset"], []).append(sum(o.get("size", 0) for o in read.get("objects", [])))
        seen += 1
        if seen >= 10:
            break
    if not then:
        return None, {}
    datasets: dict[str, Any] = {}
    before = now = 0
    for name, sizes in then.items():
        size_then = int(statistics.median(sizes))
        if name not in app.catalog:
            continue
        dataset = app.catalog.get(name)
        try:
            size_now = resolve(dataset, app.open_store(dataset.store_uri)).size
        except NotFound:
            size_now = 0
        datasets[name] = {"bytes_then": size_then, "bytes_now": size_now}
        before += size_then
        now += size_now
    return (now / before if before else None), datasets


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    i = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[i]


# -- sizes ----------------------------------------------------------------------------------------
def _datasets_of(app: App, route: Any) -> list[Dataset]:
    names = route.options.get("reads") or route.options.get("datasets")
    if isinstance(names, str):
        names = [names]
    if names:
        return [app.catalog.get(n) for n in names]
    return list(app.catalog)


def _from_sizes(app: App, route: Any) -> dict[str, Any]:
    from nubes.data.catalog import resolve

    total, objects, datasets = 0, 0, {}
    for dataset in _datasets_of(app, route):
        try:
            resolved = resolve(dataset, app.open_store(dataset.store_uri))
        except NotFound:
            continue
        total += resolved.size
        objects += len(resolved.objects)
        datasets[dataset.name] = {"bytes_now": resolved.size, "objects": len(resolved.objects)}
    expected = 20.0 + total / SCAN_BYTES_PER_S * 1000
    ops = {"put": 1 if datasets else 0, "get": 2 * objects + 1, "head": objects, "list": len(datasets)}
    return {"method": "sizes", "expected_ms": expected, "low_ms": expected / 3, "high_ms": expected * 3,
            "ops": {"low": ops, "expected": ops, "high": {k: v * 2 for k, v in ops.items()}}, "memory": {},
            "datasets": datasets, "detail": {"bytes": total, "scan_bytes_per_s": SCAN_BYTES_PER_S}}


# -- sample run -----------------------------------------------------------------------------------
class _Probe:
    """An invocation hook that keeps the duration and storage operations of sandbox runs."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, dict[str, int], int]] = []

    def begin(self, inv: Invocation) -> None:
        return None

    def end(self, inv: Invocation) -> None:
        snap = inv.io.snapshot()
        self.runs.append((inv.duration_ms or 0.0, dict(snap["ops"]), inv.status or 0))


class _Overlay:
    """A store that reads through to ``base`` and keeps every write in memory (the sandbox's home store)."""

    def __init__(self, base: ObjectStore, scratch: ObjectStore) -> None:
        self.base, self.scratch = base, scratch
        self.uri = scratch.uri
        self.stats = scratch.stats
        self._deleted: set[str] = set()

    def put(self, key: str, data: Any, **kw: Any) -> ObjectInfo:
        self._deleted.discard(key)
        return self.scratch.put(key, data, **kw)

    def _pick(self, key: str) -> ObjectStore:
        if key in self._deleted:
            raise NotFound("deleted in the quote sandbox", uri=self.uri, key=key)
        return self.scratch if self.scratch.exists(key) else self.base

    def get(self, key: str) -> bytes:
        return self._pick(key).get(key)

    def get_range(self, key: str, start: int, end: int | None) -> bytes:
        return self._pick(key).get_range(key, start, end)

    def open(self, key: str) -> Any:
        return self._pick(key).open(key)

    def head(self, key: str) -> ObjectInfo:
        return self._pick(key).head(key)

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterable[ObjectInfo]:
        mine = {o.key: o for o in self.scratch.list(prefix)}
        theirs = {o.key: o for o in self.base.list(prefix) if o.key not in self._deleted}
        return iter(sorted({**theirs, **mine}.values(), key=lambda o: o.key))

    def delete(self, key: str) -> None:
        self._deleted.add(key)
        self.scratch.delete(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.delete(key)

    def url(self, key: str) -> str:
        return self.scratch.url(key)


class _SliceCatalog:
    """The app's catalog as the sandbox sees it: each dataset, on first use, replaced by a slice of it."""

    def __init__(self, app: App, sandbox: _Sandbox) -> None:
        self._real = app.catalog
        self._app = app
        self._sandbox = sandbox
        self._extra: dict[str, Dataset] = {}
        self._made: dict[str, Dataset] = {}
        self.fraction = 1.0

    def get(self, name: str) -> Dataset:
        if name in self._extra:
            return self._extra[name]
        key = f"{name}@{self.fraction}"
        if key not in self._made:
            self._made[key] = self._sandbox.slice(self._real.get(name), self.fraction)
        return self._made[key]

    def add(self, dataset: Dataset, *, replace_existing: bool = False) -> Dataset:
        self._extra[dataset.name] = dataset
        return dataset

    def __contains__(self, name: object) -> bool:
        return name in self._extra or name in self._real

    def __iter__(self) -> Any:
        return iter(list(self._real) + list(self._extra.values()))

    def __len__(self) -> int:
        return len(self._real) + len(self._extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Sandbox:
    def __init__(self, app: App) -> None:
        from nubes.data.session import CheckCache
        from nubes.storage.memory import MemoryStore

        self.app = app
        self.tag = uuid.uuid4().hex[:12]
        self.names: list[str] = []
        self.stores: dict[str, ObjectStore] = {}
        self.full: dict[str, dict[str, Any]] = {}  # dataset -> bytes, objects
        self.effective: dict[float, float] = {}  # asked fraction -> share of the data the slices hold
        self.probe = _Probe()
        home_name = self._name("home")
        self.home = _Overlay(app.storage, MemoryStore(home_name))
        clone = copy.copy(app)
        clone.hooks = [self.probe]
        clone._stores = {}
        clone._storage = self.home  # type: ignore[assignment]
        clone._storage_uri = self.home.uri
        clone._lock = threading.RLock()
        # extension attributes built from the real home store are rebuilt over the sandbox's on use
        clone._attributes = {k: v for k, v in app._attributes.items() if k not in ("models", "check_cache")}
        clone.check_cache = CheckCache()
        clone.log = app.log.bind(quote_sample=True)
        clone.catalog = _SliceCatalog(app, self)  # type: ignore[assignment]
        clone.open_store = self.open_store  # type: ignore[method-assign]
        self.clone = clone

    def _name(self, what: str) -> str:
        name = f"nubes-quote-{self.tag}-{what}"
        self.names.append(name)
        return name

    def open_store(self, uri: str) -> ObjectStore:
        """Sandbox stores: a fresh memory store for every URI (slices and writes live there)."""
        from nubes.storage.memory import MemoryStore

        store = self.stores.get(uri)
        if store is None:
            store = self.stores[uri] = MemoryStore(self._name(f"s{len(self.stores)}"))
        return store

    def slice(self, dataset: Dataset, fraction: float) -> Dataset:
        """A copy of ``dataset`` holding about ``fraction`` of each of its objects, in a memory store."""
        from nubes.data.catalog import MANIFEST, resolve

        real_store = self.app.open_store(dataset.store_uri)
        resolved = resolve(dataset, real_store)
        self.full[dataset.name] = {"bytes": resolved.size, "objects": len(resolved.objects)}
        uri = f"mem://{self._name(dataset.name)}"
        store = self.open_store(uri)
        fmt = (resolved.manifest or {}).get("format", dataset.format)
        covered = 0.0
        for info in resolved.objects:
            data, share = _slice_object(real_store, info, fmt, fraction)
            store.put(info.key, data)
            covered += share * info.size
        effective = covered / resolved.size if resolved.size else 1.0
        self.effective[fraction] = max(self.effective.get(fraction, 0.0), effective)
        if resolved.manifest is not None:
            import json

            store.put(MANIFEST, json.dumps(resolved.manifest).encode())
        pattern = dataset.pattern
        return replace(dataset, store_uri=uri, uri=uri + "/" + (pattern or ""), checks=())

    def run(self, request: Request, fraction: float) -> tuple[float, dict[str, int]]:
        self.clone.catalog.fraction = fraction  # type: ignore[attr-defined]
        # every run sees fresh views: the session caches per invocation only, nothing else to reset
        before = len(self.probe.runs)
        response = self.clone.handle(request)
        duration, ops, status = self.probe.runs[before]
        if status >= 500:
            raise RuntimeError(f"the sample run answered {status}: {response.body[:300]!r}")
        return duration, ops

    def close(self) -> None:
        from nubes.storage.memory import MemoryStore

        for name in self.names:
            MemoryStore.drop(name)


def _slice_object(store: ObjectStore, info: ObjectInfo, fmt: str, fraction: float) -> tuple[bytes, float]:
    """About ``fraction`` of one object, and the share of it actually kept."""
    if fraction >= 1.0:
        return store.get(info.key), 1.0
    if fmt == "parquet":
        return _slice_parquet(store, info, fraction)
    # CSV / NDJSON: the first lines up to ``fraction`` of the bytes (a CSV keeps its header line)
    want = max(1, int(info.size * fraction))
    data = store.get_range(info.key, 0, min(info.size, want + 64 * 1024))
    cut = data.rfind(b"\n", 0, want + 1)
    if cut <= 0:
        cut = data.find(b"\n")
    out = data[: cut + 1] if cut > 0 else data
    return out, len(out) / info.size if info.size else 1.0


VECTOR = 2048  # DuckDB writes row groups in multiples of its vector size


def _slice_parquet(store: ObjectStore, info: ObjectInfo, fraction: float) -> tuple[bytes, float]:
    """The first rows of a Parquet object, in as many row groups as the original has (storage requests
    grow with row groups and projected columns, so the slice is read the way the original is)."""
    import os
    import tempfile

    from nubes.data.bridge import Bridge

    with Bridge({"src": store}) as bridge, tempfile.TemporaryDirectory(prefix="nubes-quote-") as tmp:
        con = bridge.duckdb()
        src = "'" + f"nubes://src/{info.key}".replace("'", "''") + "'"
        rows, groups = con.execute(f"SELECT num_rows, num_row_groups FROM parquet_file_metadata({src})").fetchone()
        rows, groups = int(rows or 0), max(int(groups or 1), 1)
        per_group = max(VECTOR, math.ceil(math.ceil(rows * fraction) / groups / VECTOR) * VECTOR)
        n = min(rows, per_group * groups)
        out = os.path.join(tmp, "slice.parquet")
        target = "'" + out.replace("'", "''") + "'"
        con.execute(f"COPY (SELECT * FROM read_parquet({src}) LIMIT {n}) TO {target} "
                    f"(FORMAT parquet, ROW_GROUP_SIZE {per_group})")
        with open(out, "rb") as f:
            return f.read(), (n / rows if rows else 1.0)


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x`` (b >= 0)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    b = max(b, 0.0)
    return my - b * mx, b


def _from_sample(app: App, request: Request, repeats: int = 3) -> dict[str, Any]:
    from nubes.metering.meter import peak_rss_mb

    sandbox = _Sandbox(app)
    try:
        started = time.perf_counter()
        # the fraction that makes the smaller slice about SAMPLE_BYTES per dataset (found on the warm-up)
        sandbox.run(request, 0.01)  # warm-up: imports, DuckDB, first slices; also learns the dataset sizes
        largest = max((d["bytes"] for d in sandbox.full.values()), default=0)
        if not largest:  # the route reads no dataset: its duration is what it is
            runs = [sandbox.run(request, 1.0) for _ in range(repeats + 2)]
            durations = sorted(d for d, _ in runs)
            ops = _median_ops([o for _, o in runs])
            return {"method": "sample", "expected_ms": statistics.median(durations), "low_ms": durations[0],
                    "high_ms": durations[-1], "ops": {"low": ops, "expected": ops, "high": ops}, "memory": {},
                    "peak_rss_mb": peak_rss_mb(), "datasets": {},
                    "detail": {"runs": len(runs), "fractions": [1.0], "seconds": round(time.perf_counter() - started, 3)}}
        f1 = min(1.0, max(SAMPLE_BYTES / largest, sandbox.effective.get(0.01, 0.0)))
        f2 = min(1.0, 2 * f1)
        points: list[tuple[float, float, dict[str, int]]] = []
        for fraction in (f1, f2) if f2 > f1 else (f1,):
            sandbox.run(request, fraction)  # makes this fraction's slices; not measured
            for _ in range(repeats):
                d, o = sandbox.run(request, fraction)
                points.append((sandbox.effective.get(fraction, fraction), d, o))
        by_fraction: dict[float, list[float]] = {}
        for x, d, _ in points:
            by_fraction.setdefault(x, []).append(d)
        fx = sorted(by_fraction)
        fy = [statistics.median(by_fraction[x]) for x in fx]
        lows = [min(by_fraction[x]) for x in fx]
        highs = [max(by_fraction[x]) for x in fx]
        if len(fx) > 1:
            a, b = _fit(fx, fy)
            expected = a + b
            low = max(_fit(fx, lows)[0] + _fit(fx, lows)[1], 0.0)
            high = _fit(fx, highs)[0] + _fit(fx, highs)[1]
        else:
            expected, low, high = fy[0], lows[0], highs[0]
        # Storage requests follow the data's layout (objects, row groups, columns), which the slices
        # keep: they are taken from the larger slice, and extrapolated only if they grew with it.
        ops_exp: dict[str, int] = {}
        for op in STORAGE_OPS:
            per = {x: statistics.median(p[2].get(op, 0) for p in points if p[0] == x) for x in fx}
            top = per[fx[-1]]
            if len(fx) > 1 and per[fx[-1]] > per[fx[0]] + 1:
                oa, ob = _fit(fx, [float(per[x]) for x in fx])
                top = oa + ob
            ops_exp[op] = max(0, round(top))
        datasets = {name: {"bytes_now": d["bytes"], "objects": d["objects"]} for name, d in sandbox.full.items()}
        return {
            "method": "sample", "expected_ms": max(expected, 0.0), "low_ms": min(low, expected), "high_ms": max(high, expected),
            "ops": {"low": ops_exp, "expected": ops_exp, "high": ops_exp}, "memory": {}, "peak_rss_mb": peak_rss_mb(),
            "datasets": datasets,
            "detail": {"runs": len(points) + 1 + len(fx), "fractions": [round(x, 5) for x in fx],
                       "durations_ms": [round(y, 3) for y in fy], "seconds": round(time.perf_counter() - started, 3)},
        }
    finally:
        sandbox.close()


def _median_ops(runs: list[Mapping[str, int]]) -> dict[str, int]:
    return {op: round(statistics.median(r.get(op, 0) for r in runs)) for op in STORAGE_OPS}
