"""Analytics over object storage: the catalog, the engine (DuckDB and Polars over any store), quality
checks, lineage and the sandboxed SQL endpoint. Attaches to an app as an extension; ``import nubes``
loads no data library."""
