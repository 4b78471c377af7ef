"""Reading an Azure deployment back and applying one change, with the official management SDKs.

Filled in below the credentials check; see :mod:`.deploy` for the resources.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from nubes.adapters.deployment import StateUnavailable


class NoCredentials(StateUnavailable):
    """No Azure credentials are configured; the message says how to give them."""


def credential() -> Any:
    """A service principal from the environment, else the Azure CLI's login; never the instance metadata
    endpoint unless ``NUBES_AZURE_MANAGED_IDENTITY=1``."""
    env = os.environ
    if env.get("AZURE_CLIENT_ID") and env.get("AZURE_TENANT_ID") and (env.get("AZURE_CLIENT_SECRET") or env.get("AZURE_CLIENT_CERTIFICATE_PATH")
                                                                       or env.get("AZURE_FEDERATED_TOKEN_FILE")):
        from azure.identity import EnvironmentCredential, WorkloadIdentityCredential

        return WorkloadIdentityCredential() if env.get("AZURE_FEDERATED_TOKEN_FILE") else EnvironmentCredential()
    if env.get("NUBES_AZURE_MANAGED_IDENTITY") == "1":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential()
    if shutil.which("az"):
        from azure.identity import AzureCliCredential

        return AzureCliCredential()
    raise NoCredentials("no Azure credentials: run `az login`, or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET "
                        "(on an Azure VM set NUBES_AZURE_MANAGED_IDENTITY=1)")


def read(deployer: Any, target: Any, desired: list[Any]) -> list[Any]:
    credential()
    raise NotImplementedError


def apply(deployer: Any, change: Any, target: Any, artifact: Any) -> Any:
    raise NotImplementedError
