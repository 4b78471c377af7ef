"""Azure naming rules for trigger bindings (Blob containers of ``[deploy.azure.sources]``, Storage
queues of ``[deploy.azure.queues]``), each with its source."""

from __future__ import annotations

import re
from collections.abc import Mapping

from nubes.adapters.naming import pattern, problems

# learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
# and .../naming-queues-and-metadata: 3-63 lower-case letters, digits and hyphens, starting (queues:
# and ending) with a letter or digit, every hyphen between letters or digits.
_NAME = r"(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*"
container_problem = pattern(_NAME, "3-63 lower-case letters, digits and single hyphens, starting with a letter or digit")
queue_problem = pattern(_NAME, "3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit")


def binding_problems(sources: Mapping[str, str], queues: Mapping[str, str]) -> list[str]:
    return problems("azure", "az", container_problem, queue_problem, "Storage queue", sources, queues)


def jobs_queue_name(name: str) -> str:
    """``<name>-jobs`` made a valid Storage queue name (3-63 lower-case letters, digits, single '-'):
    the queue of an app's jobs, which ``nubes deploy`` creates and :mod:`.jobs` sends to."""
    slug = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", name.lower()))[:58].strip("-") or "nubes"
    return f"{slug}-jobs"
