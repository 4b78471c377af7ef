"""The quote's sandbox: the app run on slices of its datasets, writing nothing outside memory.

:class:`Sandbox` is a shallow copy of the app whose catalog hands out slices of each dataset (the
first rows of every object, written with the original's rows per row group, in memory stores),
whose home store is an :class:`Overlay` (reads fall through to the real home store, writes, deletes
and conditional writes stay in memory; it passes the storage contract,
``tests/metering/test_overlay_contract.py``) and whose only invocation hook is a :class:`Probe`
measuring each run: wall time, CPU time, storage operations and peak resident memory.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nubes.errors import NotFound, PreconditionFailed
from nubes.storage.base import BaseStore, Data, ObjectInfo, unquote_etag
from nubes.storage.current import CURRENT_IO

if TYPE_CHECKING:
    from nubes.core.app import App
    from nubes.core.hooks import Invocation
    from nubes.core.request import Request
    from nubes.data.catalog import Dataset
    from nubes.storage.base import ObjectStore

try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Run:
    """One sandbox run: wall ms, CPU seconds (all threads), storage operations, peak RSS MB, status."""

    duration_ms: float
    cpu_s: float
    ops: dict[str, int]
    peak_rss_mb: float | None
    status: int


def _rss_mb() -> float | None:
    """The process's resident set now (MB), from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _cpu_s() -> float:
    if _resource is None:
        return time.process_time()
    u = _resource.getrusage(_resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


class Probe:
    """An invocation hook that keeps what each sandbox run used. Peak memory is sampled every 2 ms by
    a thread while a run lasts (the resident set the function instance would need; the process's
    lifetime peak is left alone), or read from ``ru_maxrss`` where /proc is missing."""

    INTERVAL_S = 0.002

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self._stop = threading.Event()
        self._peak: float | None = None
        self._cpu = 0.0
        self._thread: threading.Thread | None = None

    def begin(self, inv: Invocation) -> None:
        self._peak = _rss_mb()
        self._stop.clear()
        if self._peak is not None:
            self._thread = threading.Thread(target=self._sample, name="nubes-quote-rss", daemon=True)
            self._thread.start()
        self._cpu = _cpu_s()

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            now = _rss_mb()
            if now is not None and (self._peak is None or now > self._peak):
                self._peak = now

    def end(self, inv: Invocation) -> None:
        cpu = _cpu_s() - self._cpu
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        peak = self._peak
        now = _rss_mb()
        if now is not None and peak is not None:
            peak = max(peak, now)
        if peak is None and _resource is not None:
            peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
        snap = inv.io.snapshot()
        self.runs.append(Run(inv.duration_ms or 0.0, cpu, dict(snap["ops"]), peak, inv.status or 0))


class _State:
    """What every handle on one overlay shares: its scratch store, tombstones and the write lock."""

    def __init__(self, base: ObjectStore, scratch: ObjectStore) -> None:
        self.base, self.scratch = base, scratch
        self.deleted: set[str] = set()
        self.lock = threading.Lock()


class Overlay(BaseStore):
    """A store reading through to ``base`` and keeping every write and delete in ``scratch`` (the
    sandbox's home store). Conditional writes compare with what the overlay shows (scratch, else
    base unless deleted). Operations are counted once, here (the inner stores' counts stay out of
    the running invocation's)."""

    scheme = "overlay"
    retries = 1

    def __init__(self, base: ObjectStore, scratch: ObjectStore, *, name: str, state: _State | None = None) -> None:
        super().__init__(name)
        self.state = state or _State(base, scratch)

    @classmethod
    def from_uri(cls, rest: str, **options: Any) -> Overlay:
        """An overlay exists only inside a quote's sandbox: it is never registered nor opened by URI."""
        from nubes.errors import ConfigError

        raise ConfigError("overlay:// stores are made by nubes quote's sandbox and cannot be opened by URI")

    def reopen(self) -> Overlay:
        """A second handle on the same overlay."""
        return Overlay(self.state.base, self.state.scratch, name=self.root, state=self.state)

    def _inner(self, fn: Any, *args: Any, **kw: Any) -> Any:
        token = CURRENT_IO.set(None)
        try:
            return fn(*args, **kw)
        finally:
            CURRENT_IO.reset(token)

    def _current(self, path: str) -> ObjectInfo | None:
        st = self.state
        for store, skip in ((st.scratch, False), (st.base, path in st.deleted)):
            if skip:
                continue
            try:
                return self._inner(store.head, path)  # type: ignore[no-any-return]
            except NotFound:
                continue
        return None

    def _put(self, path: str, data: Data, content_type: str | None, if_none_match: bool, if_match: str | None) -> ObjectInfo:
        st = self.state
        with st.lock:
            current = self._current(path) if (if_none_match or if_match is not None) else None
            if if_none_match and current is not None:
                raise PreconditionFailed("an object already exists (if_none_match)", uri=self.uri, key=path)
            if if_match is not None and (current is None or unquote_etag(current.etag) != unquote_etag(if_match)):
                raise PreconditionFailed("the object's etag does not match (if_match)", uri=self.uri, key=path)
            info = self._inner(st.scratch.put, path, data, content_type=content_type)
            st.deleted.discard(path)
        return info  # type: ignore[no-any-return]

    def _pick(self, path: str) -> ObjectStore:
        st = self.state
        if self._inner(st.scratch.exists, path):
            return st.scratch
        if path in st.deleted:
            raise NotFound("deleted in the quote sandbox", uri=self.uri, key=path)
        return st.base

    def _get_range(self, path: str, start: int, end: int | None) -> bytes:
        return self._inner(self._pick(path).get_range, path, start, end)  # type: ignore[no-any-return]

    def _head(self, path: str) -> ObjectInfo:
        return self._inner(self._pick(path).head, path)  # type: ignore[no-any-return]

    def _list(self, path_prefix: str) -> Iterable[ObjectInfo]:
        st = self.state
        mine = {o.key: o for o in self._inner(lambda: list(st.scratch.list(path_prefix)))}
        theirs = {o.key: o for o in self._inner(lambda: list(st.base.list(path_prefix))) if o.key not in st.deleted}
        return sorted({**theirs, **mine}.values(), key=lambda o: o.key)

    def _delete(self, path: str) -> None:
        st = self.state
        with st.lock:
            st.deleted.add(path)
            self._inner(st.scratch.delete, path)

    def url(self, key: str) -> str:
        return f"overlay://{self.root}/{self._path(key)}"


class SliceCatalog:
    """The app's catalog as the sandbox sees it: each dataset, on first use, replaced by a slice of it."""

    def __init__(self, app: App, sandbox: Sandbox) -> None:
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


class Sandbox:
    """A copy of ``app`` whose datasets are slices in memory and whose writes stay in memory (see the module docstring)."""

    def __init__(self, app: App) -> None:
        from nubes.data.session import CheckCache
        from nubes.storage.memory import MemoryStore

        self.app = app
        self.tag = uuid.uuid4().hex[:12]
        self.names: list[str] = []
        self.folder: str | None = None  # slices of file:// datasets: local files, read the way the originals are
        self.stores: dict[str, ObjectStore] = {}
        self.full: dict[str, dict[str, Any]] = {}  # dataset -> bytes, objects
        self.effective: dict[float, float] = {}  # asked fraction -> share of the data the slices hold
        self.probe = Probe()
        home_name = self._name("home")
        self.home = Overlay(app.storage, MemoryStore(home_name), name=home_name)
        clone = copy.copy(app)
        clone.hooks = [self.probe]
        clone._stores = {}
        clone._storage = self.home
        clone._storage_uri = self.home.uri
        clone._lock = threading.RLock()
        # extension attributes built from the real home store are rebuilt over the sandbox's on use
        clone._attributes = {k: v for k, v in app._attributes.items() if k not in ("models", "check_cache")}
        attrs = vars(clone)  # instance attributes win over the extensions' (looked up only when missing)
        attrs["check_cache"] = CheckCache()
        attrs["catalog"] = SliceCatalog(app, self)
        attrs["open_store"] = self.open_store
        clone.log = app.log.bind(quote_sample=True)
        clone._jobs = None  # job state, if any, over the sandbox's home store
        self.clone = clone

    def _name(self, what: str) -> str:
        name = f"nubes-quote-{self.tag}-{what}"
        self.names.append(name)
        return name

    def open_store(self, uri: str) -> ObjectStore:
        """Sandbox stores: a fresh memory store for every URI (slices and writes live there); slices of
        local files are local files in the sandbox's own folder."""
        from nubes.storage.memory import MemoryStore

        store = self.stores.get(uri)
        if store is None:
            if self.folder is not None and uri.startswith(f"file://{self.folder}/"):
                import nubes.storage

                store = nubes.storage.open(uri)
            else:
                store = MemoryStore(self._name(f"s{len(self.stores)}"))
            self.stores[uri] = store
        return store

    def slice(self, dataset: Dataset, fraction: float) -> Dataset:
        """A copy of ``dataset`` holding about ``fraction`` of each of its objects, in a store of the same
        kind as far as reading goes: local files for a ``file://`` dataset (DuckDB reads those natively),
        memory for the others (read by ranges, as object stores are)."""
        from nubes.data.catalog import MANIFEST, resolve

        real_store = self.app.open_store(dataset.store_uri)
        resolved = resolve(dataset, real_store)
        self.full[dataset.name] = {"bytes": resolved.size, "objects": len(resolved.objects)}
        if dataset.store_uri.startswith("file://"):
            if self.folder is None:
                import tempfile

                self.folder = tempfile.mkdtemp(prefix="nubes-quote-")
            uri = f"file://{self.folder}/{self._name(dataset.name)}"
        else:
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

    def prepare(self, fraction: float) -> None:
        """Make the slices at ``fraction`` of every dataset seen so far (before a measured run)."""
        catalog = vars(self.clone)["catalog"]
        catalog.fraction = fraction
        for name in list(self.full):
            catalog.get(name)

    def run(self, request: Request, fraction: float) -> Run:
        """One run of ``request`` with every dataset sliced to ``fraction`` (RuntimeError if it answers 5xx)."""
        vars(self.clone)["catalog"].fraction = fraction
        # every run sees fresh views: the session caches per invocation only, nothing else to reset
        before = len(self.probe.runs)
        route, _ = self.clone.router.match(request.method, request.raw_path)
        job = _SampleJob(None, "quote-sample", 1, None) if route.options.get("job") else None
        response = self.clone.handle(request, job=job)  # a job route's handler runs here, not queued
        run = self.probe.runs[before]
        if run.status >= 500:
            raise RuntimeError(f"the sample run answered {run.status}: {response.body[:300]!r}")
        return run

    def close(self) -> None:
        from nubes.storage.journal import forget
        from nubes.storage.memory import MemoryStore

        forget(self.home.uri)  # the sandbox's lineage journal
        for name in self.names:
            MemoryStore.drop(name)
        if self.folder is not None:
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)


def _job_run_type() -> type:
    from nubes.core.job_runs import JobRun

    class SampleJob(JobRun):
        """A job attempt for a sample run: the handler runs in the sandbox; its progress goes nowhere."""

        def progress(self, value: float | None, message: str | None) -> None:
            return None

    return SampleJob


def _SampleJob(*args: Any) -> Any:
    return _job_run_type()(*args)


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

    from nubes.data.engine.bridge import Bridge
    from nubes.data.sqltext import literal

    with Bridge({"src": store}) as bridge, tempfile.TemporaryDirectory(prefix="nubes-quote-") as tmp:
        con = bridge.duckdb()
        src = literal(bridge.path(info.key))
        meta = con.execute(f"SELECT num_rows, num_row_groups FROM parquet_file_metadata({src})").fetchone()
        rows, groups = (int(meta[0] or 0), max(int(meta[1] or 1), 1)) if meta else (0, 1)
        per_group = max(VECTOR, math.ceil(math.ceil(rows * fraction) / groups / VECTOR) * VECTOR)
        n = min(rows, per_group * groups)
        out = os.path.join(tmp, "slice.parquet")
        target = literal(out)
        con.execute(f"COPY (SELECT * FROM read_parquet({src}) LIMIT {n}) TO {target} "
                    f"(FORMAT parquet, ROW_GROUP_SIZE {per_group})")
        with open(out, "rb") as f:
            return f.read(), (n / rows if rows else 1.0)


