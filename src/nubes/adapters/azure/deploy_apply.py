"""One function per resource kind that creates, updates or deletes it on Azure, idempotently.

ARM ``PUT`` is create-or-update, so creates and updates are the same call; deletes tolerate "not found".
The function app's code is zip-deployed after its settings whenever the artifact's hash changes.
"""

from __future__ import annotations

from collections.abc import Callable

from nubes.adapters.azure.deploy_state import Apis, _get, publish
from nubes.adapters.deployment import TAG_APP, Artifact, Change, Target


def account(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    if change.action == "create":
        from azure.mgmt.storage import models

        location = str(target.extra.get("location") or target.region)
        apis.storage.storage_accounts.begin_create(apis.group, change.resource.name, models.StorageAccountCreateParameters(
            sku=models.Sku(name="Standard_LRS"), kind="StorageV2", location=location, tags={TAG_APP: target.name},
            properties=models.StorageAccountPropertiesCreateParameters(allow_blob_public_access=False,
                                                                       minimum_tls_version="TLS1_2"))).result()


def container(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    from azure.mgmt.storage import models

    name, box = change.resource.name.split("/", 1)
    if change.action == "delete":  # the deploy container, or a retained one nubes created (model.teardown)
        _get(lambda: apis.storage.blob_containers.delete(apis.group, name, box))
    elif change.action == "create":
        apis.storage.blob_containers.create(apis.group, name, box, models.BlobContainer(
            container_properties=models.ContainerProperties(metadata={"nubesapp": target.name}, public_access="None")))


def queue(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    from azure.mgmt.storage import models

    name, box = change.resource.name.split("/", 1)
    if change.action == "delete":
        _get(lambda: apis.storage.queue.delete(apis.group, name, box))
    elif change.action == "create":
        apis.storage.queue.create(apis.group, name, box, models.StorageQueue(queue_properties=models.QueueProperties(
            metadata={"nubesapp": target.name})))


def plan(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    from azure.mgmt.web import models

    if change.action == "delete":
        _get(lambda: apis.web.app_service_plans.delete(apis.group, change.resource.name))
        return
    p = change.resource.properties
    apis.web.app_service_plans.begin_create_or_update(apis.group, change.resource.name, models.AppServicePlan(
        location=p["location"], kind="functionapp", tags=dict(change.resource.tags),
        sku=models.SkuDescription(name=p["sku"], tier=p["tier"]),
        properties=models.AppServicePlanProperties(reserved=p["reserved"]))).result()


def site(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    from azure.mgmt.web import models

    name = change.resource.name
    if change.action == "delete":
        _get(lambda: apis.web.web_apps.delete(apis.group, name))
        return
    p = change.resource.properties
    assert artifact is not None  # the engine refuses code-bearing changes without an artifact
    farm = f"/subscriptions/{apis.subscription}/resourceGroups/{apis.group}/providers/Microsoft.Web/serverfarms/{p['plan']}"
    settings = [models.NameValuePair(name=k, value=v) for k, v in p["app_settings"].items()]
    stack = None if target.extra.get("plan", "flex") == "flex" else f"Python|{p['runtime_version']}"
    flex = target.extra.get("plan", "flex") == "flex"
    config = models.FunctionAppConfig(
        deployment=models.FunctionsDeployment(storage=models.FunctionsDeploymentStorage(
            type="blobContainer", value=p["deployment_container"],
            authentication=models.FunctionsDeploymentStorageAuthentication(type="SystemAssignedIdentity"))),
        runtime=models.FunctionsRuntime(name=p["runtime"], version=p["runtime_version"]),
        scale_and_concurrency=models.FunctionsScaleAndConcurrency(instance_memory_mb=p["instance_memory_mb"],
                                                                  maximum_instance_count=p["max_instances"])) if flex else None
    fields = set(change.fields) if change.action == "update" else set(p)
    before = (change.actual.properties.get("code_sha256") if change.actual else None) or ""

    def put(code: str) -> None:  # the code tag names the code only once it is deployed
        apis.web.web_apps.begin_create_or_update(apis.group, name, models.Site(
            location=p["location"], kind="functionapp,linux", tags={**change.resource.tags, "nubes:code": code},
            identity=models.ManagedServiceIdentity(type=p["identity"]),
            properties=models.SiteProperties(server_farm_id=farm, https_only=True, function_app_config=config,
                                             site_config=models.SiteConfig(app_settings=settings, linux_fx_version=stack)))
        ).result()

    put(before)
    apis.web.web_apps.update_application_settings(apis.group, name, models.StringDictionary(properties=dict(p["app_settings"])))
    if "code_sha256" in fields:
        publish(apis, name, artifact)
        put(p["code_sha256"])


def role_assignment(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    p = change.resource.properties
    models = apis.authorization.role_assignments.models  # the models of the API version the client speaks
    if change.action == "delete":
        _get(lambda: apis.authorization.role_assignments.delete(p["scope"], change.resource.name))
        return
    principal = apis.web.web_apps.get(apis.group, p["principal"].split(":", 1)[1]).identity.principal_id
    definition = f"/subscriptions/{apis.subscription}/providers/Microsoft.Authorization/roleDefinitions/{p['role_definition_id']}"
    apis.authorization.role_assignments.create(p["scope"], change.resource.name, models.RoleAssignmentCreateParameters(
        role_definition_id=definition, principal_id=principal, principal_type="ServicePrincipal"))


def subscription(apis: Apis, change: Change, target: Target, artifact: Artifact | None) -> None:
    from azure.mgmt.eventgrid import models

    p = change.resource.properties
    if change.action == "delete":
        poller = _get(lambda: apis.eventgrid.event_subscriptions.begin_delete(p["source"], change.resource.name))
        if poller is not None:
            poller.result()
        return
    keys = apis.web.web_apps.list_host_keys(apis.group, p["site"])
    code = (keys.system_keys or {}).get("blobs_extension", "")
    url = (f"https://{p['site']}.azurewebsites.net/runtime/webhooks/blobs?functionName=Host.Functions.{p['function']}&code={code}")
    apis.eventgrid.event_subscriptions.begin_create_or_update(p["source"], change.resource.name, models.EventSubscription(
        destination=models.WebHookEventSubscriptionDestination(endpoint_url=url),
        filter=models.EventSubscriptionFilter(included_event_types=list(p["event_types"]),
                                              subject_begins_with=p["subject_begins_with"]),
        event_delivery_schema="EventGridSchema")).result()


HANDLERS: dict[str, Callable[[Apis, Change, Target, Artifact | None], None]] = {
    "azure.storage.account": account, "azure.storage.container": container, "azure.storage.queue": queue,
    "azure.web.plan": plan, "azure.web.site": site, "azure.authorization.role_assignment": role_assignment,
    "azure.eventgrid.subscription": subscription,
}

__all__ = ["HANDLERS"]
