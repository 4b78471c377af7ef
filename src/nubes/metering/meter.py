"""The metering hook: every invocation priced on its cloud's model, in headers, log line and ledger.

Installed on every :class:`~nubes.App` (``app.hooks``). Per invocation it records request id, app,
route (or event handlers), cloud, plan, front, region, memory, architecture, start time, duration,
billed duration, the process's peak resident memory (``ru_maxrss``: a process-lifetime peak, the
closest a Python process can see to what Azure observes), cold start, storage operations and bytes
(``inv.io``: the store calls and DuckDB reads of this invocation), bytes carried over HTTP, a
fingerprint of the request body (quotes match history on it), tenant, nubes' own writes for it
(amortised, see below) and the cost in USD by component. HTTP responses get
``X-Nubes-Billed-Duration-Ms`` and ``X-Nubes-Cost-Usd`` (``X-Nubes-Request-Id`` is set by the core);
with the ``headers = "full"`` setting also ``X-Nubes-Billed-Memory-Mb`` and ``X-Nubes-Cost-Components``
(``off``: none). The invocation's log line carries the whole record (``nubes costs --reconcile``
rebuilds missing ledger records from it).

Which prices apply: the platform's cloud (emulated or real) and plan; local runs are priced as
``local_provider`` (default: the first registered cloud, aws). Settings: :mod:`nubes.metering.config`.

**Bookkeeping, amortised.** The ledger record and the invocation's lineage entries are written in
batches; each invocation is charged its share: one record's share of an object PUT (1 / the
records per object its journal has written in this process; before the first write, the policy's
batch size, or 1 when flushing per invocation) and, for the ledger, the same share of a GET (each
raw object is read once when compacted). Compaction's own PUT per rollup is shared by thousands of
records and not charged.

**Where the records go** (the ``flush`` setting; :mod:`nubes.storage.journal` has the mechanism):

* locally and under emulation (``auto``: ``background``) — appended to an on-disk spool before the
  response leaves and written by a background thread every ``flush_interval_s`` or ``batch_size``
  records: a SIGKILL or SIGTERM after the answer loses nothing (the next process replays the spool).
* on a real cloud (``auto``: ``batch``) — no durable local disk, so no spool: records wait in memory
  and a background thread writes them when ``cloud_batch_size`` wait or the oldest has waited
  ``cloud_max_age_s``; nothing is written on a request's path. The bound is stated in the README
  ("What it costs"); every record is also in its invocation's log line.
* ``invocation`` — written before the response leaves (one PUT per invocation, on the request path).

This module is imported when the metering extension is attached: it imports nothing heavy and reads
its settings on the first invocation.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nubes.metering.ledger import new_record_id
from nubes.metering.pricing import Usage

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.events import Platform
    from nubes.core.hooks import Invocation
    from nubes.metering.config import Settings
    from nubes.metering.ledger import Ledger
    from nubes.metering.prices import PriceBook
    from nubes.metering.pricing import PriceModel

try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None  # type: ignore[assignment]

_OPS = ("put", "get", "head", "list", "delete", "delete_many")
_DIGEST_WHOLE = 64 * 1024  # bodies up to this are hashed whole; longer ones by length, head and tail
# fields the app's own log line already has, by kind (the meter adds the rest of the record)
_IN_LOG_LINE = {"http": frozenset({"method", "path", "route", "status", "duration_ms", "request_id", "app"}),
                "event": frozenset({"duration_ms", "request_id", "app"})}


_PEAK: list[float] = [0.0, 0.0]  # [monotonic time read, MB]
PEAK_TTL_S = 0.05


def peak_rss_mb(max_age_s: float = 0.0) -> float | None:
    """The process's peak resident set in MB (Linux reports ru_maxrss in KiB, macOS in bytes).

    ``max_age_s`` > 0 accepts a reading that old (the peak only grows; ``getrusage`` costs tens of µs
    on a busy host): prices that bill it (Azure Consumption) always read it afresh.
    """
    if _resource is None:
        return None
    now = time.monotonic()
    if max_age_s and now - _PEAK[0] < max_age_s:
        return _PEAK[1]
    peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
    value = round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    _PEAK[0], _PEAK[1] = now, value
    return value


def body_digest(body: bytes) -> str | None:
    """A short fingerprint of a request body (whole up to 64 KiB; else its length, first and last 32 KiB)."""
    if not body:
        return None
    import hashlib

    if len(body) > _DIGEST_WHOLE:
        half = _DIGEST_WHOLE // 2
        body = str(len(body)).encode() + body[:half] + body[-half:]
    return hashlib.blake2b(body, digest_size=8).hexdigest()


class _Route:
    """Where the records of one platform go, and what a record of it is priced on (cached per platform)."""

    __slots__ = ("cloud", "inline", "model", "nominal", "platform", "policy")
    policy: dict[str, Any]

    def __init__(self, meter: Meter, platform: Platform, s: Settings) -> None:
        import os

        from nubes.core import clouds
        from nubes.metering.pricing import model

        self.platform = platform
        on_cloud = clouds.is_cloud(platform.provider)
        self.cloud = platform.provider if on_cloud else s.local_cloud()
        self.model: PriceModel = model(self.cloud, s.plan(self.cloud))
        real = on_cloud and not platform.emulated
        mode = s.flush
        if mode == "auto":
            mode = "batch" if real else "background"
        spool = s.spool if s.spool is not None else (not real or bool(os.environ.get("NUBES_SPOOL_DIR")))
        common = {"spool": "auto" if spool else None, "sync": s.spool_sync, "max_buffer": s.max_buffer}
        if mode == "batch":
            self.policy = {"mode": "background", "batch_size": s.cloud_batch_size, "max_age_s": s.cloud_max_age_s, **common}
        elif mode == "invocation":
            self.policy = {"mode": "manual", **common}
        else:  # background (and off: lineage still follows it)
            self.policy = {"mode": "background", "batch_size": s.batch_size, "max_age_s": s.flush_interval_s, **common}
        self.inline = mode == "invocation"
        self.nominal = 1.0 if self.inline else float(self.policy["batch_size"])


class Meter:
    """The invocation hook. ``app.hooks`` holds one; :func:`nubes.metering.meter_of` finds it."""

    def __init__(self, app: App, **settings: Any) -> None:
        self.app = app
        self._code: dict[str, Any] = dict(settings)
        self._settings: Settings | None = None
        self._book: PriceBook | None = None
        self._ledger: Ledger | None = None
        self._routes: dict[Platform, _Route] = {}
        self._route: _Route | None = None  # the last one used (a process runs on one platform)
        self._lock = threading.Lock()
        self._where: list[Path] = []
        try:  # nubes.toml beside the module that created the app (the frame calling App(...))
            caller = sys._getframe(2).f_globals.get("__file__")
            if caller:
                self._where.append(Path(caller).resolve().parent)
        except (ValueError, AttributeError):
            pass
        self._where.append(Path.cwd())

    @property
    def enabled(self) -> bool:
        """False when metering is off (``NUBES_METERING=off`` or configured so): the app then skips the hook."""
        return bool(self.settings.enabled)

    # -- settings --------------------------------------------------------------------------------
    def configure(self, **settings: Any) -> Meter:
        """Change settings in code (they win over ``nubes.toml`` and the environment); checked at once."""
        from nubes.metering.config import load

        with self._lock:
            code = {**self._code, **settings}
            loaded = load(self._where, code)  # raises ConfigError before anything changes
            self._code, self._settings, self._book = code, loaded, None
            self._routes, self._route = {}, None
        return self

    @property
    def settings(self) -> Settings:
        settings = self._settings
        if settings is None:
            from nubes.metering.config import load

            with self._lock:
                settings = self._settings = load(self._where, self._code)
        return settings

    @property
    def book(self) -> PriceBook:
        book = self._book
        if book is None:
            from nubes.metering.prices import PriceBook

            book = self._book = PriceBook(self.settings.prices)
        return book

    def ledger(self) -> Ledger:
        """The app's ledger (one per home store and process), made on first use."""
        ledger = self._ledger
        if ledger is None:
            from nubes.metering.ledger import Ledger

            with self._lock:
                if self._ledger is None:
                    app = self.app
                    uri = app.storage_uri  # fixed now: the store written is the one the journal (and spool) is for
                    self._ledger = Ledger(lambda: app.open_store(uri), uri=uri, log=app.log,
                                          compact_objects=self.settings.compact_objects)
                ledger = self._ledger
        return ledger

    @property
    def _uri(self) -> str:
        ledger = self._ledger
        return ledger.uri if ledger is not None else self.app.storage_uri

    def _route_for(self, platform: Platform) -> _Route:
        route = self._route
        if route is not None and route.platform is platform:
            return route
        route = self._routes.get(platform)
        if route is None:
            from nubes.storage import journal

            route = _Route(self, platform, self.settings)
            journal.set_defaults(**route.policy)  # lineage (and any other bookkeeping) follows the ledger
            if self.settings.ledger and self.settings.flush != "off":
                ledger = self.ledger()
                ledger.journal.configure(**journal.policy_for(ledger.uri, "ledger", route.policy))
            if len(self._routes) < 64:
                self._routes[platform] = route
        self._route = route
        return route

    def flush(self, timeout: float = 5.0) -> bool:
        """Write every buffered ledger record and lineage entry of the app's home store now (retrying
        until ``timeout``); True if all were written."""
        from nubes.storage.journal import journals

        ok = True
        for j in journals(self._uri):
            ok = j.close(timeout) and ok
        return ok

    # -- the hook --------------------------------------------------------------------------------
    def begin(self, inv: Invocation) -> None:
        self._route_for(inv.platform)  # the bookkeeping policy is set before the handler records lineage

    def end(self, inv: Invocation) -> None:
        s = self.settings
        if not s.enabled:
            return
        route = self._route_for(inv.platform)
        write = s.ledger and s.flush != "off"
        record = self.record(inv, s, route)
        inv.state["metering"] = record
        response = inv.response
        if response is not None and s.headers != "off":
            h = response.headers
            h["x-nubes-billed-duration-ms"] = str(record["billed_duration_ms"])
            h["x-nubes-cost-usd"] = f"{record['cost_usd']:.12f}"
            if s.headers == "full":
                h["x-nubes-billed-memory-mb"] = str(record["billed_memory_mb"])
                h["x-nubes-cost-components"] = (
                    f"compute={record['cost_compute_usd']:.12f};request={record['cost_request_usd']:.12f};"
                    f"gateway={record['cost_gateway_usd']:.12f};storage={record['cost_storage_usd']:.12f};"
                    f"bookkeeping={record['cost_bookkeeping_usd']:.12f}")
        skip = _IN_LOG_LINE["http" if inv.kind == "http" else "event"]
        fields = inv.log_fields
        fields["priced_as"] = f"{record['provider']}/{record['plan']}"
        fields.update(record)
        for key in skip:  # the app's own log line has these already
            del fields[key]
        if not write:
            return
        ledger = self.ledger()
        ledger.append(record)
        if route.inline:
            from nubes.storage.journal import journals

            for j in journals(ledger.uri):
                j.flush()

    def record(self, inv: Invocation, s: Settings | None = None, route: _Route | None = None) -> dict[str, Any]:
        """The ledger record of a finished invocation."""
        s = s or self.settings
        route = route or self._route_for(inv.platform)
        platform = inv.platform
        memory = platform.memory_mb or s.memory_mb
        io = inv.io.snapshot()
        ops = io["ops"]
        peak = peak_rss_mb(0.0 if route.model.bills_observed_memory else PEAK_TTL_S)
        request, response = inv.request, inv.response
        http = inv.kind == "http"
        duration = inv.duration_ms or 0.0
        front = getattr(platform, "front", None) or s.fronts.get(route.cloud)
        http_bytes = 0
        digest = None
        headers = route.model.prices_bytes(front)  # count header bytes only where they are billed (an ALB)
        if request is not None:
            body = request.body
            http_bytes = len(body)
            if body:
                digest = body_digest(body)
            if headers:
                http_bytes += sum(len(k) + len(v) + 4 for k, v in request.headers.multi_items())
        if response is not None:
            http_bytes += len(response.body)
            if headers:
                http_bytes += sum(len(k) + len(v) + 4 for k, v in response.headers.items())
        puts, gets = self._bookkeeping(route, ops.get("journal:lineage", 0), s)
        emulated = bool(platform.emulated or route.cloud != platform.provider)
        usage = Usage(duration, memory, peak, platform.architecture, http, ops, emulated, front, http_bytes, puts, gets)
        cost = route.model.price(usage, self.book)
        started = inv.start_time.isoformat()
        get = ops.get
        return {
            "record_id": new_record_id(),
            "request_id": inv.request_id,
            "app": self.app.name,
            "kind": inv.kind,
            "method": request.method if request is not None else None,
            "path": request.path if request is not None else None,
            "route": inv.route,
            "status": inv.status,
            "provider": route.cloud,
            "plan": cost.plan,
            "front": front,
            "gateway": cost.gateway,
            "platform": platform.provider,
            "emulated": emulated,
            "function_name": platform.function_name,
            "region": platform.region,
            "memory_mb": memory,
            "architecture": platform.architecture or "x86_64",
            "start_time": started,
            "day": started[:10],
            "duration_ms": duration,
            "billed_duration_ms": cost.billed_duration_ms,
            "billed_memory_mb": cost.billed_memory_mb,
            "peak_rss_mb": peak,
            "cold_start": bool(platform.cold_start),
            "ops_put": get("put", 0), "ops_get": get("get", 0), "ops_head": get("head", 0), "ops_list": get("list", 0),
            "ops_delete": get("delete", 0), "ops_delete_many": get("delete_many", 0),
            "bytes_read": int(io["bytes_read"]),
            "bytes_written": int(io["bytes_written"]),
            "http_bytes": http_bytes,
            "body_digest": digest,
            "tenant": self.tenant(inv, s) if request is not None else None,
            "bookkeeping_puts": puts,
            "bookkeeping_gets": gets,
            "gb_seconds": cost.gb_seconds,
            "vcpu_seconds": cost.vcpu_seconds,
            "cost_compute_usd": cost.compute_usd,
            "cost_request_usd": cost.request_usd,
            "cost_gateway_usd": cost.gateway_usd,
            "cost_storage_usd": cost.storage_usd,
            "cost_bookkeeping_usd": cost.bookkeeping_usd,
            "cost_usd": cost.total_usd,
        }

    def _bookkeeping(self, route: _Route, lineage_entries: int, s: Settings) -> tuple[float, float]:
        """(PUTs, GETs) of nubes' own writes this invocation is charged (see the module docstring)."""
        if not s.ledger or s.flush == "off":
            puts = gets = 0.0
        else:
            share = 1.0 / self.ledger().records_per_put(route.nominal)
            puts = gets = share
        if lineage_entries:
            from nubes.storage.journal import journals

            found = [j for j in journals(self._uri) if j.name == "lineage"]
            per_put = (found[0].written / found[0].puts) if found and found[0].puts else route.nominal
            puts += lineage_entries / max(per_put, 1.0)
        return puts, gets

    @staticmethod
    def tenant(inv: Invocation, s: Settings) -> str | None:
        """The caller's tenant: the authenticated principal's (it cannot be overridden by a header), else
        the tenant header, else the tenant of the API key sent (the older [metering] api_keys)."""
        principal = getattr(inv, "principal", None)
        if principal is not None and getattr(principal, "tenant", None):
            return str(principal.tenant)
        headers = inv.request.headers  # type: ignore[union-attr]
        if s.tenant_header:
            value = headers.get(s.tenant_header)
            if value:
                return value.strip()
        if s.api_keys:
            key = headers.get(s.api_key_header)
            if not key:
                auth = headers.get("authorization") or ""
                if auth[:7].lower() == "bearer ":
                    key = auth[7:].strip()
            if key:
                return s.api_keys.get(key)
        return None
