"""Provider-shaped invocation payloads, for tests: each cloud's builders live in its package
(:mod:`nubes.adapters.aws.builders`, :mod:`nubes.adapters.gcp.builders`, :mod:`nubes.adapters.azure.builders`)."""

from nubes.adapters.aws import builders as aws
from nubes.adapters.azure import builders as azure
from nubes.adapters.gcp import builders as gcp

__all__ = ["aws", "azure", "gcp"]
