"""Data quality checks for datasets: ``from nubes import checks; checks.not_null("id")``.

Declared on a dataset (``app.dataset(name, uri, checks=[...])``) and evaluated inside DuckDB, so
only counts and at most five sample rows per check reach Python. See :mod:`nubes.data.checks`
for the contracts. Importing this module loads no data library.
"""

from nubes.data.checks import *  # noqa: F403
from nubes.data.checks import __all__ as __all__
