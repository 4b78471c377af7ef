"""The metering hook: every invocation priced on its provider's model, in headers, log line and ledger.

Installed on every :class:`~nubes.App` (``app.hooks``). Per invocation it records request id, app,
route (or event handlers), provider, plan, region, memory, architecture, start time, duration,
billed duration, the process's peak resident memory (``ru_maxrss``: a process-lifetime peak, the
closest a Python process can see to what Azure observes), cold start, storage operations and bytes
(``inv.io``: the store calls and DuckDB reads of this invocation), tenant, and the cost in USD by
component. HTTP responses get ``X-Nubes-Billed-Duration-Ms``, ``X-Nubes-Billed-Memory-Mb``,
``X-Nubes-Cost-Usd`` and ``X-Nubes-Cost-Components`` (``X-Nubes-Request-Id`` is set by the core).

Which prices apply: the platform's provider (``aws``/``gcp``/``azure``, emulated or real); local
runs are priced as ``local_provider`` (default ``aws``). Settings: :mod:`nubes.metering.config`.

This module is imported by ``App.__init__``: it imports nothing heavy and reads its settings on the
first invocation.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.hooks import Invocation
    from nubes.metering.config import Settings
    from nubes.metering.ledger import Ledger
    from nubes.metering.prices import PriceBook

try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None  # type: ignore[assignment]

_CLOUDS = frozenset({"aws", "gcp", "azure"})
_OPS = ("put", "get", "head", "list", "delete", "delete_many")


def peak_rss_mb() -> float | None:
    """The process's peak resident set in MB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    if _resource is None:
        return None
    peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


class Meter:
    """The invocation hook. ``app.hooks`` holds one; :func:`nubes.metering.meter_of` finds it."""

    def __init__(self, app: App, **settings: Any) -> None:
        self.app = app
        self._code: dict[str, Any] = dict(settings)
        self._settings: Settings | None = None
        self._book: PriceBook | None = None
        self._ledgers: dict[bool, Ledger] = {}
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

    def ledger(self, background: bool | None = None) -> Ledger:
        """The ledger this process writes to (background-flushed or flushed per invocation)."""
        if background is None:
            background = self.settings.flush != "invocation"
        ledger = self._ledgers.get(background)
        if ledger is None:
            from nubes.metering.ledger import Ledger

            s = self.settings
            with self._lock:
                ledger = self._ledgers.get(background)
                if ledger is None:
                    ledger = Ledger(lambda: self.app.storage, self.app.log, background=background,
                                    batch_size=s.batch_size, interval=s.flush_interval_s, max_buffer=s.max_buffer)
                    self._ledgers[background] = ledger
        return ledger

    def flush(self, timeout: float = 5.0) -> bool:
        """Write every buffered record now (retrying until ``timeout``); True if all were written."""
        return all(ledger.close(timeout) for ledger in list(self._ledgers.values()))

    # -- the hook --------------------------------------------------------------------------------
    def begin(self, inv: Invocation) -> None:
        return None

    def end(self, inv: Invocation) -> None:
        s = self.settings
        if not s.enabled:
            return
        record = self.record(inv, s)
        inv.state["metering"] = record
        response = inv.response
        if response is not None:
            h = response.headers
            h["x-nubes-billed-duration-ms"] = str(record["billed_duration_ms"])
            h["x-nubes-billed-memory-mb"] = str(record["billed_memory_mb"])
            h["x-nubes-cost-usd"] = _usd(record["cost_usd"])
            h["x-nubes-cost-components"] = (
                f"compute={_usd(record['cost_compute_usd'])};request={_usd(record['cost_request_usd'])};"
                f"gateway={_usd(record['cost_gateway_usd'])};storage={_usd(record['cost_storage_usd'])}"
            )
        inv.log_fields.update(
            cost_usd=record["cost_usd"], billed_duration_ms=record["billed_duration_ms"],
            billed_memory_mb=record["billed_memory_mb"], priced_as=f"{record['provider']}/{record['plan']}",
            memory_mb=record["memory_mb"], peak_rss_mb=record["peak_rss_mb"], cold_start=record["cold_start"],
            tenant=record["tenant"], storage_ops={k: record[f"ops_{k}"] for k in _OPS if record[f"ops_{k}"]},
            bytes_read=record["bytes_read"], bytes_written=record["bytes_written"],
            cost={"compute": record["cost_compute_usd"], "request": record["cost_request_usd"],
                  "gateway": record["cost_gateway_usd"], "storage": record["cost_storage_usd"]},
        )
        if not s.ledger or s.flush == "off":
            return
        platform = inv.platform
        cloud = platform.provider in _CLOUDS
        mode = s.flush
        if mode == "auto":
            mode = "background" if not cloud else ("invocation" if platform.emulated else "batch")
        background = mode == "background"
        ledger = self.ledger(background)
        ledger.append(record)
        if mode == "invocation" or (mode == "batch" and ledger.due(s.cloud_batch_size, s.cloud_max_age_s)):
            ledger.flush()

    def record(self, inv: Invocation, s: Settings | None = None) -> dict[str, Any]:
        """The ledger record of a finished invocation."""
        from nubes.metering.compute import Usage, price

        s = s or self.settings
        platform = inv.platform
        cloud = platform.provider in _CLOUDS
        provider = platform.provider if cloud else s.local_provider
        plan = s.plan(provider)
        memory = platform.memory_mb or s.memory_mb
        io = inv.io.snapshot()
        ops = io["ops"]
        peak = peak_rss_mb()
        http = inv.kind == "http"
        duration = inv.duration_ms or 0.0
        usage = Usage(duration, memory, peak, platform.architecture, http, ops, platform.emulated or not cloud)
        cost = price(usage, provider, plan, book=self.book, gateway=s.aws_gateway, azure_memory_mode=s.azure_memory)
        request = inv.request
        start = inv.start_time
        return {
            "request_id": inv.request_id,
            "app": self.app.name,
            "kind": inv.kind,
            "method": request.method if request is not None else None,
            "path": request.path if request is not None else None,
            "route": inv.route,
            "status": inv.status,
            "provider": provider,
            "plan": plan,
            "gateway": cost.gateway,
            "platform": platform.provider,
            "emulated": bool(platform.emulated or not cloud),
            "function_name": platform.function_name,
            "region": platform.region,
            "memory_mb": memory,
            "architecture": platform.architecture or "x86_64",
            "start_time": start.isoformat(),
            "day": start.strftime("%Y-%m-%d"),
            "duration_ms": duration,
            "billed_duration_ms": cost.billed_duration_ms,
            "billed_memory_mb": cost.billed_memory_mb,
            "peak_rss_mb": peak,
            "cold_start": bool(platform.cold_start),
            **{f"ops_{k}": int(ops.get(k, 0)) for k in _OPS},
            "bytes_read": int(io["bytes_read"]),
            "bytes_written": int(io["bytes_written"]),
            "tenant": self.tenant(inv, s) if request is not None else None,
            "gb_seconds": cost.gb_seconds,
            "vcpu_seconds": cost.vcpu_seconds,
            "cost_compute_usd": cost.compute_usd,
            "cost_request_usd": cost.request_usd,
            "cost_gateway_usd": cost.gateway_usd,
            "cost_storage_usd": cost.storage_usd,
            "cost_usd": cost.total_usd,
        }

    @staticmethod
    def tenant(inv: Invocation, s: Settings) -> str | None:
        """The caller's tenant: the authenticated principal's (it cannot be overridden by a header), else
        the tenant header, else the tenant of the API key sent (the older [metering] api_keys)."""
        principal = inv.principal
        if principal is not None and principal.tenant:
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


def _usd(value: float) -> str:
    return f"{value:.12f}"
