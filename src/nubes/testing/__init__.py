"""Testing helpers: an in-process :class:`Client`, storage contract suites and loopback servers."""

from nubes.testing.client import Client, ClientResponse

__all__ = ["Client", "ClientResponse"]
