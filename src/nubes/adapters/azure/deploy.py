"""Deploying a nubes app to Azure Functions (Flex Consumption by default): config checks and resources.

Resources (kind: name), tagged ``nubes:app = <name>``:

* ``azure.storage.account`` (referenced: ``account``, the account of the home store, which also holds
  the function's host state, bound containers and queues; the Functions triggers use one storage
  connection). Store URIs are nubes' own: ``az://container/prefix``, the account given apart),
  ``azure.storage.container`` / ``azure.storage.queue`` for the home container, the bound sources'
  containers and the bound queues. Retained: created when missing, never deleted while they hold data.
* ``azure.storage.container: <account>/nubes-<name>-deploy``: where Flex Consumption keeps the package.
* ``azure.web.plan: <name>-plan``: Flex Consumption (``FC1``) or Consumption (``Y1``), Linux.
* ``azure.web.site: <name>``: the function app (Python 3.12, system-assigned identity, app settings:
  ``AzureWebJobsStorage__accountName`` identity-based storage, ``NUBES_STORAGE``, the environment,
  ``AzureFunctionsJobHost__functionTimeout``), its code deployed by zip (``/api/publish``).
* ``azure.authorization.role_assignment``: the app's identity gets Storage Blob Data Owner (and
  Storage Queue Data Contributor when it consumes queues) on that one account, nothing else.
* ``azure.eventgrid.subscription``: blob triggers on Flex Consumption are Event Grid based: one
  subscription per watched container, to the function's blob webhook.
* jobs (only for an app with ``@app.job`` routes; :mod:`.jobs` puts each on a Storage queue that the
  package's queue-triggered ``nubes_jobs`` function consumes): ``azure.storage.queue:
  <account>/<name>-jobs`` (retained like the other queues), the app setting ``NUBES_JOBS_QUEUE``, and
  Storage Queue Data Contributor for the app's identity (the dispatcher sends and the trigger
  receives with it). The retries are host.json's ``maxDequeueCount`` = ``[jobs] max_attempts``,
  written by ``nubes build`` into the package (shown in the plan's ``info``).

Timers need no resource: the cron is declared with the function in ``function_app.py`` (NCRONTAB,
taken as written). Limits: https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan
and .../functions-scale (checked 2026-12). API calls are :mod:`.deploy_state`.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from nubes.adapters import cron as crons
from nubes.adapters.azure.triggers import jobs_queue_name
from nubes.adapters.deployment import TAG_APP, TAG_VERSION, Artifact, ModuleDeployer, Resource, Target, bindings, jobs, split_store

PLANS = {"flex": ("FC1", "FlexConsumption"), "consumption": ("Y1", "Dynamic")}
FLEX_MEMORY_MB = (512, 2048, 4096)
CONSUMPTION_MEMORY_MB = 1536
CONSUMPTION_TIMEOUT_S = 600
HTTP_TIMEOUT_S = 230  # the front end's idle timeout for an HTTP answer
ROLES = {"Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
         "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88"}
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,38}[a-z0-9]\Z")
_QUEUE = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]\Z")


def container_of(uri: str) -> tuple[str, str]:
    """``(container, prefix)`` of ``az://container/prefix`` (nubes' Azure store URIs; the account is a setting)."""
    _, container, prefix = split_store(uri)
    return container, prefix


class AzureDeployer(ModuleDeployer):
    """The :class:`nubes.adapters.base.Deployer` of Azure."""

    package = "nubes.adapters.azure"
    settings = frozenset({"location", "resource_group", "subscription", "account", "plan", "max_instances"})
    whole_numbers = frozenset({"max_instances"})
    export_formats = ("terraform",)

    def validate(self, app: Any, target: Target) -> list[str]:
        from nubes.errors import ConfigError

        p: list[str] = []
        where = target.where
        for key, example in (("resource_group", "my-group"), ("subscription", "00000000-0000-0000-0000-000000000000"),
                             ("account", "mystorageaccount")):
            if not target.extra.get(key):
                p.append(f"{where(key)} is missing: add {key} = \"{example}\"")
        if not (target.extra.get("location") or target.region):
            p.append(f"{where('location')} is missing: add location = \"westeurope\"")
        if not _NAME.match(target.name):
            p.append(f"{where('name')} {target.name!r}: a function app name here is 2-40 lower-case letters, digits or '-'")
        plan = target.extra.get("plan", "flex")
        if plan not in PLANS:
            p.append(f"{where('plan')} = {plan!r}: use flex or consumption")
        if split_store(target.storage)[0] != "az":
            p.append(f"{where('storage')} {target.storage!r}: the home store on Azure is az://container/prefix "
                     "(its storage account is the account setting)")
            return p
        account = target.extra.get("account", "")
        if account and not re.fullmatch(r"[a-z0-9]{3,24}", str(account)):
            p.append(f"{where('account')} = {account!r}: a storage account name is 3-24 lower-case letters and digits")
        if plan == "flex" and target.memory is not None and target.memory not in FLEX_MEMORY_MB:
            p.append(f"{where('memory')} = {target.memory}: Flex Consumption instances have {', '.join(map(str, FLEX_MEMORY_MB))} MB")
        if plan == "consumption" and target.memory not in (None, CONSUMPTION_MEMORY_MB):
            p.append(f"{where('memory')} = {target.memory}: the Consumption plan has a fixed {CONSUMPTION_MEMORY_MB} MB; "
                     "remove memory or use plan = \"flex\"")
        if plan == "consumption" and (target.timeout or 0) > CONSUMPTION_TIMEOUT_S:
            p.append(f"{where('timeout')} = {target.timeout}: the Consumption plan allows {CONSUMPTION_TIMEOUT_S} s; use plan = \"flex\"")
        if target.architecture not in (None, "x86_64"):
            p.append(f"{where('architecture')} = {target.architecture!r}: Azure Functions on Linux runs x86_64 here; remove it")
        if (target.http or "public") not in ("public", "none"):
            p.append(f"{where('http')} = {target.http!r}: use public or none")
        for key, override in target.routes.items():
            if override.get("timeout", 0) > HTTP_TIMEOUT_S:
                p.append(f"[deploy.azure.routes.{key!r}] timeout: Azure answers HTTP within {HTTP_TIMEOUT_S} s; run it as a job")
            if "memory" in override:
                p.append(f"[deploy.azure.routes.{key!r}] memory: one function app has one instance size; set it in [deploy.azure]")
        for logical, uri in target.sources.items():
            if split_store(uri)[0] != "az":
                p.append(f"[deploy.azure.sources] {logical} = {uri!r}: bind sources to containers of the account "
                         f"{account!r} (Azure triggers use one storage connection): az://<container>/<prefix>")
        for logical, queue in target.queues.items():
            if not _QUEUE.match(queue):
                p.append(f"[deploy.azure.queues] {logical} = {queue!r}: a Storage queue name is 3-63 lower-case letters, digits, '-'")
        found, _ = bindings(app, target)
        needs = jobs(app)
        if needs is not None and jobs_queue_name(target.name) in found.queues:
            p.append(f"[deploy.azure.queues] binds a message handler to {jobs_queue_name(target.name)!r}, the queue of the app's "
                     "jobs (nubes_jobs consumes it): bind the handler to another queue")
        if needs is not None and needs.max_attempts < 1:
            p.append(f"[jobs] max_attempts = {needs.max_attempts}: a job needs at least one attempt")
        for store in found.objects:
            if not store.startswith("az://"):
                p.append(f"an object-created handler is bound to {store!r}; on Azure bind it to az://<container>")
        for name, cron in found.schedules.items():
            try:
                crons.parse(cron, f"schedule {name!r}")
            except ConfigError as exc:
                p.append(str(exc))
        return p

    @staticmethod
    def scope(target: Target) -> str:
        return f"/subscriptions/{target.extra.get('subscription')}/resourceGroups/{target.extra.get('resource_group')}"

    def desired(self, app: Any, target: Target, artifact: Artifact | None) -> list[Resource]:
        name = target.name
        location = target.extra.get("location") or target.region
        tags = {TAG_APP: name}
        found, _ = bindings(app, target)
        account = str(target.extra.get("account"))
        container = container_of(target.storage)[0]
        account_id = f"{self.scope(target)}/providers/Microsoft.Storage/storageAccounts/{account}"
        out = [Resource("azure.storage.account", account, {}, {}, rank=0, retain=True)]
        containers = dict.fromkeys([container, *(container_of(u)[0] for u in target.sources.values()),
                                    *(container_of(s)[0] for s in found.objects)])
        out += [Resource("azure.storage.container", f"{account}/{c}", {}, {}, rank=0, retain=True) for c in containers if c]
        needs = jobs(app)
        jobs_queue = jobs_queue_name(name) if needs is not None else None
        out += [Resource("azure.storage.queue", f"{account}/{q}", {}, {}, rank=0, retain=True)
                for q in dict.fromkeys([*target.queues.values(), *([jobs_queue] if jobs_queue else [])])]
        deploy_container = f"nubes-{name}-deploy"[:63]
        out.append(Resource("azure.storage.container", f"{account}/{deploy_container}", {}, tags, rank=1))
        plan = target.extra.get("plan", "flex")
        sku, tier = PLANS[plan]
        out.append(Resource("azure.web.plan", f"{name}-plan", {"sku": sku, "tier": tier, "location": location, "reserved": True},
                            tags, rank=2))
        timeout = target.timeout or (1800 if plan == "flex" else 300)
        settings = {"AzureWebJobsStorage__accountName": account, "AZURE_STORAGE_ACCOUNT": account,
                    "NUBES_STORAGE": target.storage, **target.environment,
                    "AzureFunctionsJobHost__functionTimeout": f"{timeout // 3600:02d}:{timeout % 3600 // 60:02d}:{timeout % 60:02d}"}
        if plan == "consumption":
            settings.update(FUNCTIONS_WORKER_RUNTIME="python", FUNCTIONS_EXTENSION_VERSION="~4")
        if jobs_queue:
            settings["NUBES_JOBS_QUEUE"] = jobs_queue
        site = {"plan": f"{name}-plan", "location": location, "runtime": "python",
                "runtime_version": artifact.python if artifact else "3.12", "app_settings": settings,
                "instance_memory_mb": (target.memory or 2048) if plan == "flex" else CONSUMPTION_MEMORY_MB,
                "max_instances": int(target.extra.get("max_instances", 100)), "identity": "SystemAssigned",
                "deployment_container": f"https://{account}.blob.core.windows.net/{deploy_container}",
                "code_sha256": artifact.sha256 if artifact else None}
        declared = {"timers": {f"timer_{n}": c for n, c in found.schedules.items()},  # in function_app.py, not ARM
                    "queue_triggers": {q: list(logical) for q, logical in found.queues.items()}}
        if needs is not None:
            declared["jobs"] = {"function": "nubes_jobs", "queue": jobs_queue, "max_dequeue_count": needs.max_attempts,
                                "routes": list(needs.routes)}
        out.append(Resource("azure.web.site", name, site, {**tags, TAG_VERSION: str(getattr(app, "version", ""))}, rank=3,
                            info=declared))
        roles = ["Storage Blob Data Owner", *(["Storage Queue Data Contributor"] if found.queues or needs else [])]
        for role in roles:
            assignment = str(uuid.uuid5(uuid.NAMESPACE_URL, f"nubes:{account_id}:{name}:{role}"))
            out.append(Resource("azure.authorization.role_assignment", assignment, {
                "role": role, "role_definition_id": ROLES[role], "scope": account_id, "principal": f"site:{name}"}, {}, rank=4))
        if plan == "flex":
            for store, prefixes in found.objects.items():
                watched = container_of(store)[0]
                out.append(Resource("azure.eventgrid.subscription", f"nubes-{name}-{watched}"[:64], {
                    "source": account_id, "event_types": ["Microsoft.Storage.BlobCreated"],
                    "subject_begins_with": f"/blobServices/default/containers/{watched}/", "site": name,
                    "function": f"blob_{watched}", "prefixes": list(prefixes)}, {}, rank=5))
        return out

    def endpoint(self, resources: list[Resource]) -> str | None:
        return next((str(r.outputs["url"]) for r in resources if r.kind == "azure.web.site" and r.outputs.get("url")), None)


DEPLOYER = AzureDeployer()

__all__ = ["DEPLOYER", "AzureDeployer", "container_of"]
