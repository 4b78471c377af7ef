"""Reading an Azure deployment back and applying one change, with the official management SDKs.

``azure-mgmt-storage`` (containers, queues), ``azure-mgmt-web`` (plan, function app, app settings,
host keys), ``azure-mgmt-authorization`` (role assignments), ``azure-mgmt-eventgrid`` (the blob
trigger's subscription); the package is zip-deployed to the app's ``/api/publish`` endpoint
(Flex Consumption's "one deploy") with the same credential. ``NUBES_AZURE_ENDPOINT`` sends management
calls there instead of Azure Resource Manager, and ``NUBES_AZURE_SCM_ENDPOINT`` the zip deploy
(loopback doubles in the tests). State is what ARM answers for the deterministic names of
:mod:`.deploy`, checked for the ``nubes:app`` tag; role assignments have deterministic ids.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from functools import cached_property
from typing import Any

from nubes.adapters.deployment import (
    TAG_APP,
    Artifact,
    Change,
    Resource,
    StateUnavailable,
    Target,
    apply_change,
    clients_for,
    unless_absent,
)
from nubes.errors import ConfigError


class NoCredentials(StateUnavailable):
    """No Azure credentials are configured; the message says how to give them."""


def credential() -> Any:
    """A service principal from the environment, else the Azure CLI's login; never the instance metadata
    endpoint unless ``NUBES_AZURE_MANAGED_IDENTITY=1``."""
    env = os.environ
    secret = env.get("AZURE_CLIENT_SECRET") or env.get("AZURE_CLIENT_CERTIFICATE_PATH") or env.get("AZURE_FEDERATED_TOKEN_FILE")
    if env.get("AZURE_CLIENT_ID") and env.get("AZURE_TENANT_ID") and secret:
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



class Apis:
    """The management clients for one target, made on first use."""

    def __init__(self, target: Target) -> None:
        self.subscription = str(target.extra.get("subscription"))
        self.group = str(target.extra.get("resource_group"))
        self.account = str(target.extra.get("account"))
        self.endpoint = os.environ.get("NUBES_AZURE_ENDPOINT")
        self.credential = credential()

    def _client(self, cls: Any) -> Any:
        return cls(self.credential, self.subscription, **({"base_url": self.endpoint} if self.endpoint else {}))

    @cached_property
    def storage(self) -> Any:
        from azure.mgmt.storage import StorageManagementClient

        return self._client(StorageManagementClient)

    @cached_property
    def web(self) -> Any:
        from azure.mgmt.web import WebSiteManagementClient

        return self._client(WebSiteManagementClient)

    @cached_property
    def authorization(self) -> Any:
        from azure.mgmt.authorization import AuthorizationManagementClient

        return self._client(AuthorizationManagementClient)

    @cached_property
    def eventgrid(self) -> Any:
        from azure.mgmt.eventgrid import EventGridManagementClient

        return self._client(EventGridManagementClient)

    def scm(self, site: str) -> str:
        base = os.environ.get("NUBES_AZURE_SCM_ENDPOINT")
        return f"{base.rstrip('/')}/{site}" if base else f"https://{site}.scm.azurewebsites.net"


def _missing(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 404 or type(exc).__name__ == "ResourceNotFoundError"


def _get(call: Any) -> Any:
    return unless_absent(_missing, call)


def apis_for(target: Target) -> Apis:
    """The clients for ``target``, made once per subscription, group, account and credentials in the
    environment (the Azure CLI credential runs ``az`` for a token: once, not per change)."""
    key = ("azure", target.extra.get("subscription"), target.extra.get("resource_group"), target.extra.get("account"), credential,
           *(os.environ.get(v) for v in ("NUBES_AZURE_ENDPOINT", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "NUBES_AZURE_MANAGED_IDENTITY",
                                         "HOME")))
    return clients_for(key, lambda: Apis(target))


def _ours(tags: Any, target: Target, what: str, name: str) -> None:
    if (tags or {}).get(TAG_APP) != target.name:
        raise ConfigError(f"a {what} named {name!r} exists but nubes did not create it for {target.name!r}; choose another "
                          f"{target.where('name')} or remove it")


# -- reading ------------------------------------------------------------------------------------------
def read(deployer: Any, target: Target, desired: list[Resource]) -> list[Resource]:
    apis, name, out = apis_for(target), target.name, []
    for r in desired:
        if r.kind == "azure.storage.account":
            found = _get(lambda r=r: apis.storage.storage_accounts.get_properties(apis.group, r.name))
            if found is not None:
                out.append(Resource(r.kind, r.name, {}, {}, 0, True))
        elif r.kind == "azure.storage.container":
            account, container = r.name.split("/", 1)
            found = _get(lambda a=account, c=container: apis.storage.blob_containers.get(apis.group, a, c))
            if found is not None:
                meta = (found.container_properties.metadata if found.container_properties else None) or {}
                tags = {TAG_APP: name} if meta.get("nubesapp") == name else {}
                out.append(Resource(r.kind, r.name, {}, tags, r.rank, r.retain))
        elif r.kind == "azure.storage.queue":
            account, queue = r.name.split("/", 1)
            found = _get(lambda a=account, q=queue: apis.storage.queue.get(apis.group, a, q))
            if found is not None:
                meta = (found.queue_properties.metadata if found.queue_properties else None) or {}
                tags = {TAG_APP: name} if meta.get("nubesapp") == name else {}
                out.append(Resource(r.kind, r.name, {}, tags, 0, True))
        elif r.kind == "azure.authorization.role_assignment":
            found = _get(lambda r=r: apis.authorization.role_assignments.get(r.properties["scope"], r.name))
            if found is not None:
                out.append(Resource(r.kind, r.name, {**r.properties, "role_definition_id":
                                                     found.role_definition_id.rsplit("/", 1)[-1]}, {}, r.rank))
        elif r.kind == "azure.eventgrid.subscription":
            found = _get(lambda r=r: apis.eventgrid.event_subscriptions.get(r.properties["source"], r.name))
            if found is not None:
                out.append(Resource(r.kind, r.name, {
                    **r.properties, "event_types": list(found.filter.included_event_types or []),
                    "subject_begins_with": found.filter.subject_begins_with}, {}, r.rank))
    plan = _get(lambda: apis.web.app_service_plans.get(apis.group, f"{name}-plan"))
    if plan is not None:
        _ours(plan.tags, target, "App Service plan", plan.name)
        out.append(Resource("azure.web.plan", plan.name, {"sku": plan.sku.name, "tier": plan.sku.tier, "location": plan.location,
                                                          "reserved": bool(plan.properties.reserved)}, dict(plan.tags), 2))
    site = _get(lambda: apis.web.web_apps.get(apis.group, name))
    if site is not None:
        _ours(site.tags, target, "function app", name)
        out.append(_site(apis, site))
    return out


def _site(apis: Apis, site: Any) -> Resource:
    settings = dict(apis.web.web_apps.list_application_settings(apis.group, site.name).properties or {})
    config = site.properties.function_app_config
    tags = dict(site.tags or {})
    code = tags.pop("nubes:code", None)
    storage_url = config.deployment.storage.value if config and config.deployment and config.deployment.storage else None
    scale = config.scale_and_concurrency if config else None
    props = {"plan": site.properties.server_farm_id.rsplit("/", 1)[-1], "location": site.location,
             "runtime": config.runtime.name if config and config.runtime else "python",
             "runtime_version": config.runtime.version if config and config.runtime else None,
             "app_settings": settings, "instance_memory_mb": scale.instance_memory_mb if scale else None,
             "max_instances": scale.maximum_instance_count if scale else None,
             "identity": site.identity.type if site.identity else None, "deployment_container": storage_url,
             "code_sha256": code}
    return Resource("azure.web.site", site.name, props, tags, 3,
                    outputs={"url": f"https://{site.properties.default_host_name}", "code_sha256": code,
                             "principal_id": site.identity.principal_id if site.identity else None})


# -- applying ------------------------------------------------------------------------------------------
def apply(deployer: Any, change: Change, target: Target, artifact: Artifact | None) -> Resource | None:
    from nubes.adapters.azure import deploy_apply

    return apply_change(deploy_apply.HANDLERS, apis_for(target), change, target, artifact)


def publish(apis: Apis, site: str, artifact: Artifact) -> None:
    """Zip-deploy the package (Flex Consumption's one deploy: ``POST /api/publish?RemoteBuild=false``)."""
    token = apis.credential.get_token("https://management.azure.com/.default").token
    request = urllib.request.Request(f"{apis.scm(site)}/api/publish?RemoteBuild=false", data=artifact.read(), method="POST",
                                     headers={"Content-Type": "application/zip", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=600) as response:
        response.read()


__all__ = ["Apis", "NoCredentials", "apis_for", "apply", "credential", "publish", "read"]
