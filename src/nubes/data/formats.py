"""The file formats datasets can have: the one table of extensions, content types and DuckDB readers.

``parquet``, ``csv`` and ``ndjson``; a key's format comes from its extension (``.parquet``/``.pq``,
``.csv``/``.tsv``, ``.json``/``.ndjson``/``.jsonl``), optionally followed by a compression suffix
(``.gz``, ``.zst``, ``.zstd``). Imports nothing heavy.
"""

from __future__ import annotations

from typing import Any, Literal

from nubes.errors import ConfigError

Format = Literal["parquet", "csv", "ndjson"]
FORMATS: tuple[Format, ...] = ("parquet", "csv", "ndjson")
EXTENSIONS: dict[str, Format] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "ndjson",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
COMPRESSION = (".gz", ".zst", ".zstd")
CONTENT_TYPES: dict[Format, str] = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv",
    "ndjson": "application/x-ndjson",
}
SUFFIXES: dict[Format, str] = {"parquet": ".parquet", "csv": ".csv", "ndjson": ".ndjson"}
READERS: dict[Format, str] = {"parquet": "read_parquet", "csv": "read_csv", "ndjson": "read_json"}
COPY_FORMATS: dict[Format, str] = {"parquet": "parquet", "csv": "csv", "ndjson": "json"}


def extension_format(key: str) -> Format | None:
    """The format ``key``'s extension names (a compression suffix is looked through), else None."""
    name = key.rsplit("/", 1)[-1].lower()
    for suffix in COMPRESSION:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    dot = name.rfind(".")
    return EXTENSIONS.get(name[dot:]) if dot > 0 else None


def infer_format(key: str) -> Format:
    """The format of ``key`` from its extension; a ConfigError naming the fix if it has none we know."""
    fmt = extension_format(key)
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of {key!r} from its extension; pass format='parquet', 'csv' or 'ndjson'"
        )
    return fmt


def check_format(fmt: str) -> Format:
    """``fmt`` as a :data:`Format` (``json`` is NDJSON); a ConfigError for anything else."""
    name = fmt.lower()
    for known in FORMATS:
        if name == known or (name == "json" and known == "ndjson"):
            return known
    raise ConfigError(f"unknown format {fmt!r}; use 'parquet', 'csv' or 'ndjson'")


def reader_call(urls: list[str], fmt: Format, *, hive: bool | None = None, options: dict[str, Any] | None = None) -> str:
    """The DuckDB table function call reading ``urls`` in ``fmt`` (``read_parquet([...], opt = value)``)."""
    from nubes.data.sqltext import literal

    opts = dict(options or {})
    if fmt == "ndjson":
        opts.setdefault("format", "newline_delimited")
    if hive is not None:
        opts["hive_partitioning"] = hive
    target = literal(urls[0]) if len(urls) == 1 else literal(urls)
    return f"{READERS[fmt]}({target}{''.join(f', {name} = {literal(value)}' for name, value in opts.items())})"
