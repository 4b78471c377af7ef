"""Quotes: what one request will cost on each cloud and plan before it runs, and whether it fits there.

The request is the one given: method, path, query, headers *and body*. Three ways to know what it
uses, tried in this order (the answer says which):

* ``history`` — the route's own ledger records with the same method and the same body fingerprint
  (``body_digest``; a request without a body matches records without one; the same path preferred):
  warm durations (median; low/high from their spread, cold starts only widen ``high``), storage
  operations (median per kind), memory per cloud and peak memory. When the route read catalog
  datasets (its lineage says which), their size *now* is read with HEAD/LIST only and compared
  with their size then; durations and operations are scaled by that ratio (half of the duration
  assumed proportional to bytes) — the method is then ``history+sizes``.
* ``sample`` — no such history: the request runs in a sandbox (:mod:`nubes.metering.sandbox`: every
  dataset it reads sliced in memory, writes kept in memory, no ledger record) at growing slices —
  the smallest slice, then 4x, 16x ... — while the next run is expected to end within the time
  budget (``budget_s``, default 20 s), its memory to stay within 2 GB of the start, and until the
  whole data is used. Each run's duration, CPU time, storage operations and peak memory are
  measured. Duration is extrapolated to the whole data linearly (``a + b*f``), or along the power law
  of the last two slices when it grows faster than linearly (training, joins); from a single slice,
  in proportion. Peak memory likewise. A run on the whole data is reported as measured.
* ``sizes`` — when the sample run fails: dataset sizes (HEAD/LIST) at a nominal scan rate.

**Limits.** Each plan's estimate says whether the request fits. Memory: the memory the function
would run with (``memory_mb``, else the memory the route ran with on that cloud, else the metering
``memory_mb`` setting, else the plan's default — 128 MB on Lambda) is compared with the expected
peak; when the peak is over it, the answer says so and quotes the smallest memory the plan offers
that holds it (Consumption, which bills what it observes, up to its 1,536 MB). Time: the expected
duration is compared with how long an HTTP invocation may last on the plan (front-end timeouts
included) — when it is over, the estimate advises a job (``job=True``, which runs off the request
path, within the function's own timeout) — and with the plan's maximum duration. ``fits`` is False
when no configuration of the plan can run it; ``notes`` say why and what to do. Durations are at this
machine's speed, as the emulator runs them (on Lambda under 1,769 MB, CPU-bound work runs slower).

Each estimate is priced with the meter's own price model:
``{"estimates": [{"provider", "plan", "low_usd", "expected_usd", "high_usd", "memory_mb", "fits",
"notes", ...}], "warnings": [...], ...}``.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nubes.errors import ConfigError, HTTPError, NotFound
from nubes.metering.ledger import STORAGE_OPS
from nubes.metering.pricing import PriceModel, Usage, models

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.request import Request
    from nubes.data.catalog import Dataset
    from nubes.metering.sandbox import Run, Sandbox

WARM_UP = 0.001  # the first slice (at least a row-group vector of rows per row group)
MEMORY_CAP_MB = 2048.0  # no slice is run that would make a run grow memory by more than this
SCAN_BYTES_PER_S = 200e6  # the ``sizes`` method's nominal rate
HISTORY_LIMIT = 200
BUDGET_S = 20.0  # how long the sample runs may take in all (NUBES_QUOTE_BUDGET_S)
GROWTH = 4.0  # each slice is this many times the previous one


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
    budget_s: float | None = None,
) -> dict[str, Any]:
    """Estimate the cost of ``method path`` (with ``body``) on each plan (see the module docstring).

    ``method_hint`` forces ``history``, ``sample`` or ``sizes``.
    """
    from nubes.core import clouds
    from nubes.core.request import Request
    from nubes.metering import meter_of
    from nubes.metering.meter import body_digest

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
    wanted = set(providers or clouds.names())
    unknown = wanted - set(clouds.names())
    if unknown:
        raise ConfigError(f"unknown provider(s) {sorted(unknown)}; use {', '.join(clouds.names())}")
    if method_hint not in (None, "history", "sample", "sizes"):
        raise ConfigError(f"method must be history, sample or sizes, not {method_hint!r}")
    if budget_s is None:
        budget_s = float(os.environ.get("NUBES_QUOTE_BUDGET_S") or BUDGET_S)
    meter = meter_of(app)
    meter.flush(timeout=2.0)

    basis: dict[str, Any] | None = None
    if method_hint in (None, "history"):
        basis = _from_history(app, route.path, verb, request.path, body_digest(body))
        if basis is None and method_hint == "history":
            raise ConfigError(f"no ledger history for {verb} {route.path} with this body; run it first or use the sample method")
    if basis is None and method_hint in (None, "sample"):
        try:
            basis = _from_sample(app, request, budget_s)
        except Exception as exc:
            if method_hint == "sample":
                raise
            app.log.warning("quote: sample run failed; estimating from dataset sizes", error=f"{type(exc).__name__}: {exc}")
            basis = None
    if basis is None:
        basis = _from_sizes(app, route)

    settings = meter.settings
    is_job = bool(route.options.get("job"))
    estimates = [_estimate(m, basis, memory_mb or basis["memory"].get(m.cloud) or settings.memory_mb,
                           settings.fronts.get(m.cloud), is_job, meter.book)
                 for m in models() if m.cloud in wanted]
    warnings = sorted({n for e in estimates for n in e["notes"] if e["notes"]})
    return {
        "app": app.name, "method": verb, "path": path, "route": route.path, "basis": basis["method"],
        "body_bytes": len(body), "peak_rss_mb": basis.get("peak_rss_mb"), "detail": basis.get("detail", {}),
        "datasets": basis.get("datasets", {}), "estimates": estimates, "warnings": warnings,
    }


def _estimate(m: PriceModel, basis: Mapping[str, Any], memory: float | None, front: str | None, is_job: bool,
              book: Any) -> dict[str, Any]:
    """One plan's estimate: memory and time against the plan's limits, then the price (see the module docstring)."""
    configured = float(m.max_memory_mb if m.bills_observed_memory else (memory or m.default_memory_mb))
    needed = basis.get("peak_rss_mb")
    notes: list[str] = []
    fits = True
    priced = configured
    where = f"{m.cloud}/{m.plan}"
    if needed and needed > configured:
        choice = m.fitting_memory(needed)
        if choice is None:
            fits = False
            notes.append(f"{where}: the run needs about {needed:,.0f} MB of memory, more than the {m.max_memory_mb:,} MB "
                         "the plan offers")
        else:
            notes.append(f"{where}: the run needs about {needed:,.0f} MB of memory, over the {configured:,.0f} MB "
                         f"configured (it would be killed); quoted at {choice:,} MB, the smallest that fits")
            priced = float(choice)
    seconds = basis["expected_ms"] / 1000
    http_limit = m.http_limit_s(front)
    if seconds > m.max_duration_s:
        fits = False
        notes.append(f"{where}: the run takes about {seconds:,.0f} s, over the {m.max_duration_s:,.0f} s one invocation "
                     "may last even as a job: split the work or run it outside a function")
    elif seconds > http_limit and not is_job:
        notes.append(f"{where}: the run takes about {seconds:,.0f} s, over the {http_limit:,.0f} s an HTTP request may "
                     "last there: make the route a job (job=True) so it runs off the request path")
    elif basis["high_ms"] / 1000 > http_limit and not is_job:
        notes.append(f"{where}: the slowest runs may pass the {http_limit:,.0f} s an HTTP request may last there")
    costs = {}
    for label in ("low", "expected", "high"):
        usage = Usage(basis[f"{label}_ms"], priced, needed, basis.get("architecture"), True, basis["ops"][label], True, front)
        costs[label] = m.price(usage, book)
    exp = costs["expected"]
    return {
        "provider": m.cloud, "plan": m.plan,
        "low_usd": min(c.total_usd for c in costs.values()), "expected_usd": exp.total_usd,
        "high_usd": max(c.total_usd for c in costs.values()), "method": basis["method"],
        "memory_mb": exp.billed_memory_mb, "configured_memory_mb": round(configured), "peak_rss_mb": needed,
        "duration_ms": round(basis["expected_ms"], 3), "billed_duration_ms": exp.billed_duration_ms,
        "limit_s": http_limit if not is_job else m.max_duration_s, "fits": fits, "notes": notes,
        "components": {"compute": exp.compute_usd, "request": exp.request_usd, "gateway": exp.gateway_usd,
                       "storage": exp.storage_usd},
    }


# -- history --------------------------------------------------------------------------------------
def _from_history(app: App, route: str, method: str, path: str, digest: str | None) -> dict[str, Any] | None:
    from nubes.metering.rollup import ledger_view

    with ledger_view(app.storage) as con:
        cur = con.execute(
            f"""SELECT request_id, path, provider, plan, memory_mb, duration_ms, cold_start, peak_rss_mb, architecture,
                       {", ".join(f"ops_{op}" for op in STORAGE_OPS)}, bytes_read
                FROM ledger WHERE route = ? AND method = ? AND kind = 'http' AND body_digest IS NOT DISTINCT FROM ?
                ORDER BY start_time DESC LIMIT {HISTORY_LIMIT}""", [route, method, digest])
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
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
    peaks = [r["peak_rss_mb"] for r in warm if r["peak_rss_mb"]]
    ran_with = [r["memory_mb"] for r in warm if r["memory_mb"]]
    peak = max(peaks) if peaks else None
    if peak and ran_with:  # it ran (and, emulated, was held to it) at that memory: that much is enough
        peak = min(peak, max(ran_with))
    basis: dict[str, Any] = {
        "method": "history", "expected_ms": expected, "low_ms": low, "high_ms": high,
        "ops": {"low": ops, "expected": ops, "high": {op: max(r[f"ops_{op}"] or 0 for r in rows) for op in STORAGE_OPS}},
        "memory": memory, "peak_rss_mb": peak, "architecture": warm[0]["architecture"],
        "detail": {"records": len(rows), "warm": len(warm), "same_path": bool(same), "body_digest": digest},
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
        if not {entry.get("request_id"), *entry.get("request_ids", [])} & wanted:
            continue
        for read in entry.get("reads", []):
            then.setdefault(read["dataset"], []).append(sum(o.get("size", 0) for o in read.get("objects", [])))
        seen += 1
        if seen >= 10:
            break
    datasets: dict[str, Any] = {}
    before = now = 0
    for name, sizes in then.items():
        if name not in app.catalog:
            continue
        dataset = app.catalog.get(name)
        try:
            size_now = resolve(dataset, app.open_store(dataset.store_uri)).size
        except NotFound:
            size_now = 0
        size_then = int(statistics.median(sizes))
        datasets[name] = {"bytes_then": size_then, "bytes_now": size_now}
        before += size_then
        now += size_now
    return (now / before if before else None), datasets


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


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
    ops = {"get": 2 * objects + 1, "head": objects, "list": len(datasets)}
    return {"method": "sizes", "expected_ms": expected, "low_ms": expected / 3, "high_ms": expected * 3,
            "ops": {"low": ops, "expected": ops, "high": {k: v * 2 for k, v in ops.items()}}, "memory": {},
            "datasets": datasets, "detail": {"bytes": total, "scan_bytes_per_s": SCAN_BYTES_PER_S}}


# -- sample run -----------------------------------------------------------------------------------
def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x`` (b >= 0)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    b = max(b, 0.0)
    return my - b * mx, b


def extrapolate(fractions: list[float], values: list[float]) -> float:
    """``values`` (measured at ``fractions`` of the data, ascending) at the whole data: the linear fit, or,
    when the last two points grow faster than linearly, the power law through them (whichever is larger)."""
    if fractions[-1] >= 1.0:
        return float(values[-1])
    if len(fractions) == 1:  # one slice only (the budget stopped there): assume it grows with the data
        return values[-1] / max(fractions[-1], 1e-9)
    a, b = _fit(fractions, values)
    linear = a + b
    (f1, v1), (f2, v2) = (fractions[-2], values[-2]), (fractions[-1], values[-1])
    if v1 > 0 and v2 > v1 and f2 > f1:
        k = math.log(v2 / v1) / math.log(f2 / f1)
        if k > 1.0:
            return float(max(linear, v2 * (1.0 / f2) ** min(k, 3.0)))
    return float(max(linear, values[-1]))


MEMORY_NOISE_MB = 32.0  # resident-set changes smaller than this are the allocator's, not the data's


def _memory_growth(fractions: list[float], growth: list[float]) -> float:
    """What a run on the whole data adds to the resident set: grown linearly with the data (memory held
    per row) when the largest slice grew it measurably, else what the slices showed."""
    if growth[-1] < MEMORY_NOISE_MB or fractions[-1] >= 1.0:
        return max(growth)
    if len(fractions) == 1:
        return growth[-1] / max(fractions[-1], 1e-9)
    a, b = _fit(fractions, growth)
    return max(a + b, growth[-1])


def _from_sample(app: App, request: Request, budget_s: float, repeats: int = 3) -> dict[str, Any]:
    from nubes.metering.sandbox import Sandbox, _rss_mb

    sandbox = Sandbox(app)
    started = time.perf_counter()
    try:
        warm = sandbox.run(request, WARM_UP)  # imports, DuckDB, the smallest slices; also learns the dataset sizes
        base = _rss_mb() or 0.0  # what the instance holds between runs: memory grows from here
        if not sandbox.full:  # the route reads no dataset: it does what it does
            runs = [sandbox.run(request, 1.0) for _ in range(repeats + 2)]
            return _basis("sample", [1.0], [runs], sandbox, started, base)
        fraction = WARM_UP
        xs: list[float] = []
        points: list[list[Run]] = []
        while True:
            sandbox.prepare(fraction)  # slices made outside the measured runs
            # a slow warm-up counts as the first run (its one-time costs make it, if anything, an overestimate)
            runs = [warm if (not points and warm.duration_ms >= 1000) else sandbox.run(request, fraction)]
            if runs[0].duration_ms < 1000:
                runs += [sandbox.run(request, fraction) for _ in range(repeats - 1)]
            x = sandbox.effective.get(fraction, fraction)
            if xs and x <= xs[-1] * 1.01:  # the slice did not grow (row-group granularity): same point
                points[-1] += runs
            else:
                xs.append(x)
                points.append(runs)
            if x >= 1.0:
                break
            nxt = min(1.0, max(fraction, x) * GROWTH)
            scale = nxt / x
            last_ms = statistics.median(r.duration_ms for r in runs)
            grown = max((r.peak_rss_mb or 0.0) for r in runs) - base
            spent = time.perf_counter() - started
            # the next slice costs about (growth x) this one, at least once, twice if fast
            if spent + last_ms / 1000 * scale * (1 if last_ms * scale >= 1000 else repeats) > budget_s:
                break
            if grown * scale > MEMORY_CAP_MB:  # enough to know it is big; not worth exhausting this host
                break
            fraction = nxt
        return _basis("sample", xs, points, sandbox, started, base)
    finally:
        sandbox.close()


def _basis(method: str, xs: list[float], points: list[list[Run]], sandbox: Sandbox, started: float,
           base: float) -> dict[str, Any]:
    """The sample's estimate; peak memory is ``base`` (what the instance holds between runs) plus the
    growth a run on the whole data is expected to cause."""
    med = [statistics.median(r.duration_ms for r in p) for p in points]
    lows = [min(r.duration_ms for r in p) for p in points]
    highs = [max(r.duration_ms for r in p) for p in points]
    expected, low, high = extrapolate(xs, med), extrapolate(xs, lows), extrapolate(xs, highs)
    peaks = [max((r.peak_rss_mb or 0.0) for r in p) for p in points]
    growth = [max(p - base, 0.0) for p in peaks]
    peak = base + _memory_growth(xs, growth) if any(peaks) else None
    # Storage requests follow the data's layout (objects, row groups, columns), which the slices
    # keep: taken from the largest slice, extrapolated only if they grew with it.
    ops: dict[str, int] = {}
    for op in STORAGE_OPS:
        per = [statistics.median(r.ops.get(op, 0) for r in p) for p in points]
        top = per[-1]
        if len(per) > 1 and per[-1] > per[0] + 1:
            top = extrapolate(xs, [float(v) for v in per])
        ops[op] = max(0, round(top))
    datasets = {name: {"bytes_now": d["bytes"], "objects": d["objects"]} for name, d in sandbox.full.items()}
    return {
        "method": method, "expected_ms": max(expected, 0.0), "low_ms": min(low, expected), "high_ms": max(high, expected),
        "ops": {"low": ops, "expected": ops, "high": ops}, "memory": {}, "peak_rss_mb": round(peak, 1) if peak else None,
        "datasets": datasets,
        "detail": {"runs": sum(len(p) for p in points), "fractions": [round(x, 5) for x in xs],
                   "durations_ms": [round(y, 3) for y in med], "peak_rss_mb": [round(p, 1) for p in peaks],
                   "cpu_s": [round(statistics.median(r.cpu_s for r in p), 4) for p in points],
                   "seconds": round(time.perf_counter() - started, 3)},
    }
