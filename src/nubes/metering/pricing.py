"""Price models: one class per billing plan, declared here and implemented in each cloud's package.

A cloud package (``nubes/adapters/<cloud>/prices.py``) holds its figures and one
:class:`PriceModel` subclass per plan; its ``cloud.CLOUD`` object exposes them as ``price_models``
(plan name -> model) and ``default_plan``. Metering finds them through :mod:`nubes.core.clouds`
and never branches on a cloud's name. Every model passes the contract in
``tests/metering/test_price_models.py`` (non-negative, monotonic in duration and memory, components
adding up to the total, every figure sourced, fronts and storage operations priced).

What a model prices is a :class:`Usage` (what one invocation used) into a :class:`Cost`:

* ``compute`` — the plan's duration x memory (x vCPU) arithmetic with its rounding and minimums;
* ``request`` — the per-invocation (per-execution) price;
* ``gateway`` — what the front that carried an HTTP request charges (``usage.front``; events have none);
* ``storage`` — the invocation's own storage operations at the cloud's object-store prices;
* ``bookkeeping`` — nubes' own writes for this invocation, amortised: the ledger record's and the
  lineage entries' share of the objects their journals write (``usage.bookkeeping_puts``) and of
  the reads that compact them (``usage.bookkeeping_gets``), at the same storage prices.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from nubes.errors import ConfigError

if TYPE_CHECKING:
    from nubes.metering.prices import Figure, PriceBook

STORAGE_OPS = ("put", "get", "head", "list", "delete", "delete_many")


@dataclass(slots=True)
class Usage:
    """What an invocation used: wall duration, memory (configured / peak observed), architecture, whether
    it came through HTTP and by which front, bytes carried, storage operations, nubes' own writes."""

    duration_ms: float
    memory_mb: float | None = None
    peak_rss_mb: float | None = None
    architecture: str | None = None
    http: bool = True
    ops: Mapping[str, int] = field(default_factory=dict)
    emulated: bool = True
    front: str | None = None  # None: the model's default front
    http_bytes: int = 0  # request + response bytes (what a load balancer processes)
    bookkeeping_puts: float = 0.0
    bookkeeping_gets: float = 0.0


@dataclass(slots=True)
class Cost:
    provider: str
    plan: str
    gateway: str | None  # the front priced ("none" for events and direct calls)
    billed_duration_ms: int
    billed_memory_mb: int
    gb_seconds: float
    vcpu_seconds: float
    compute_usd: float
    request_usd: float
    gateway_usd: float
    storage_usd: float
    bookkeeping_usd: float = 0.0

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.request_usd + self.gateway_usd + self.storage_usd + self.bookkeeping_usd

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["total_usd"] = self.total_usd
        return out


_KEYS: dict[str, tuple[tuple[str, str], ...]] = {}


def _storage_keys(cloud: str) -> tuple[tuple[str, str], ...]:
    keys = _KEYS.get(cloud)
    if keys is None:
        keys = _KEYS[cloud] = tuple((op, f"{cloud}.storage.{op}") for op in STORAGE_OPS)
    return keys


def ceil_to(ms: float, step: float) -> int:
    """``ms`` rounded up to a multiple of ``step`` (durations come rounded to the µs: float noise
    such as 200.00000001 adds no step)."""
    step = step or 1
    return int(math.ceil(round(ms / step, 6)) * step)


def arch_of(architecture: str | None) -> str:
    return "arm64" if (architecture or "").lower() in ("arm64", "aarch64", "arm") else "x86_64"


class PriceModel(ABC):
    """One billing plan of one cloud. Subclasses set the class attributes and implement :meth:`compute`."""

    cloud: str  # the registry name of the cloud
    plan: str
    title: str
    figures: Mapping[str, Figure]  # every figure this plan reads, keys prefixed by the cloud's name
    fronts: tuple[str, ...] = ("none",)  # how HTTP reaches the function; the first is the default
    default_memory_mb: int = 128
    bills_observed_memory: bool = False  # True: the memory billed is the peak observed (read it every invocation)

    # -- the arithmetic ------------------------------------------------------------------------------
    @abstractmethod
    def compute(self, usage: Usage, book: PriceBook) -> tuple[int, int, float, float, float, float]:
        """``(billed_duration_ms, billed_memory_mb, gb_seconds, vcpu_seconds, compute_usd, request_usd)``."""

    def gateway_usd(self, front: str, usage: Usage, book: PriceBook) -> float:
        """What ``front`` charges for one HTTP request (default: the figure ``<cloud>.gateway.<front>``)."""
        return book.get(f"{self.cloud}.gateway.{front}", 0.0)

    def storage_usd(self, ops: Mapping[str, float], book: PriceBook) -> float:
        """Object-store operations at the figures ``<cloud>.storage.<op>`` (other counters are free)."""
        values = book.values
        total = 0.0
        for op, key in _storage_keys(self.cloud):
            n = ops.get(op)
            if n:
                total += n * values.get(key, 0.0)
        return total

    def prices_bytes(self, front: str | None) -> bool:
        """Whether ``front`` bills the bytes it carries (the meter then counts header bytes too)."""
        return False

    def price(self, usage: Usage, book: PriceBook) -> Cost:
        """``usage`` priced on this plan."""
        if usage.http:
            front = usage.front or self.fronts[0]
            if front not in self.fronts:
                raise ConfigError(f"{self.cloud}/{self.plan}: unknown front {front!r}; use one of {', '.join(self.fronts)}")
        else:
            front = "none"
        billed, memory, gb_s, vcpu_s, compute, request = self.compute(usage, book)
        gateway = self.gateway_usd(front, usage, book) if front != "none" else 0.0
        keeping = 0.0
        if usage.bookkeeping_puts or usage.bookkeeping_gets:
            keeping = self.storage_usd({"put": usage.bookkeeping_puts, "get": usage.bookkeeping_gets}, book)
        return Cost(self.cloud, self.plan, front, billed, memory, gb_s, vcpu_s, compute, request, gateway,
                    self.storage_usd(usage.ops, book), keeping)

    # -- what fits (quotes) --------------------------------------------------------------------------
    max_memory_mb: int = 128
    max_duration_s: float = 900.0  # the plan's own limit for one invocation

    def memory_options(self) -> Sequence[int]:
        """The memory sizes (MB) a function on this plan can be given, smallest first."""
        return (self.default_memory_mb,)

    def http_limit_s(self, front: str | None) -> float:
        """How long an HTTP invocation through ``front`` may run (front-end timeouts included)."""
        return self.max_duration_s

    def fitting_memory(self, needed_mb: float) -> int | None:
        """The smallest memory option holding ``needed_mb``, or None if none does."""
        return next((m for m in self.memory_options() if m >= needed_mb), None)

    # -- monthly grants ------------------------------------------------------------------------------
    def free_tier_credit(self, month: Mapping[str, float], book: PriceBook) -> float:
        """The month's free grants valued at list prices, for one month's totals of this plan:
        ``invocations, gb_seconds, compute_usd, gateway_usd, reads, writes``. Default: none."""
        return 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cloud}/{self.plan}>"


def model(cloud: str, plan: str | None = None) -> PriceModel:
    """The price model of ``cloud``'s ``plan`` (default: the cloud's default plan); ConfigError names the known ones."""
    from nubes.core import clouds

    c = clouds.get(cloud)
    plan = plan or c.default_plan
    found: PriceModel | None = c.price_models.get(plan)
    if found is None:
        raise ConfigError(f"no price model for {cloud!r} plan {plan!r}; {cloud} has: {', '.join(c.price_models)}")
    return found


def models() -> list[PriceModel]:
    """Every plan of every registered cloud (each cloud's default plan first)."""
    from nubes.core import clouds

    out = []
    for name in clouds.names():
        c = clouds.get(name)
        out.append(c.price_models[c.default_plan])
        out += [m for p, m in c.price_models.items() if p != c.default_plan]
    return out


def price(usage: Usage, cloud: str, plan: str | None = None, *, book: PriceBook | None = None,
          front: str | None = None) -> Cost:
    """``usage`` priced on ``cloud``/``plan`` (``front`` overrides ``usage.front``)."""
    from dataclasses import replace

    from nubes.metering.prices import default_book

    if front is not None:
        usage = replace(usage, front=front)
    return model(cloud, plan).price(usage, book or default_book())
