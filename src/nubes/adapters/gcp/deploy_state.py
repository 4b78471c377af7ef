"""Reading a Google Cloud deployment back and applying one change, with Google's official clients.

Filled in below the credentials check; see :mod:`.deploy` for the resources.
"""

from __future__ import annotations

import os
from typing import Any

from nubes.adapters.deployment import StateUnavailable


class NoCredentials(StateUnavailable):
    """No Google credentials are configured; the message says how to give them."""


def credentials() -> Any:
    """Application Default Credentials when configured (never probing the metadata server unasked);
    anonymous ones when ``NUBES_GCP_API_ENDPOINT`` points the clients at a local endpoint (tests)."""
    import google.auth
    from google.auth import _cloud_sdk
    from google.auth.credentials import AnonymousCredentials

    if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or os.path.exists(_cloud_sdk.get_application_default_credentials_path()) \
            or os.environ.get("NUBES_GCP_METADATA") == "1":
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        return creds
    if os.environ.get("NUBES_GCP_API_ENDPOINT"):
        return AnonymousCredentials()
    raise NoCredentials("no Google credentials: run `gcloud auth application-default login` or set "
                        "GOOGLE_APPLICATION_CREDENTIALS (on a Google VM set NUBES_GCP_METADATA=1)")


def read(deployer: Any, target: Any, desired: list[Any]) -> list[Any]:
    credentials()
    raise NotImplementedError


def apply(deployer: Any, change: Any, target: Any, artifact: Any) -> Any:
    raise NotImplementedError
