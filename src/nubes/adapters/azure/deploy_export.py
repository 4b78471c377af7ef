"""The Azure resources of :mod:`.deploy` as Terraform JSON (hashicorp/azurerm provider).

The storage account, retained containers and queues are referenced through ``data`` sources, not
declared (they hold data). The package is deployed by the provider from the artifact's path.
"""

from __future__ import annotations

from typing import Any

from nubes.adapters.deployment import Artifact, Resource, Target, terraform_name


def render(deployer: Any, resources: list[Resource], target: Target, artifact: Artifact | None, fmt: str) -> dict[str, Any]:
    return terraform(resources, target, artifact)


def terraform(resources: list[Resource], target: Target, artifact: Artifact | None) -> dict[str, Any]:
    tf: dict[str, dict[str, Any]] = {}
    group = target.extra.get("resource_group")
    account = target.extra.get("account")

    def add(kind: str, name: str, body: dict[str, Any]) -> str:
        tf.setdefault(kind, {})[terraform_name(name)] = body
        return f"{kind}.{terraform_name(name)}"

    data = {"azurerm_storage_account": {"home": {"name": account, "resource_group_name": group}}}
    site_ref = plan_ref = container_ref = ""
    for r in sorted(resources, key=lambda r: r.rank):
        p = r.properties
        if r.retain:
            continue
        if r.kind == "azure.storage.container":
            container_ref = add("azurerm_storage_container", "deploy", {
                "name": r.name.split("/", 1)[1], "storage_account_id": "${data.azurerm_storage_account.home.id}",
                "container_access_type": "private"})
        elif r.kind == "azure.web.plan":
            plan_ref = add("azurerm_service_plan", "plan", {"name": r.name, "resource_group_name": group, "location": p["location"],
                                                             "os_type": "Linux", "sku_name": p["sku"], "tags": dict(r.tags)})
        elif r.kind == "azure.web.site":
            settings = {k: v for k, v in p["app_settings"].items() if not k.startswith("AzureWebJobsStorage")}
            if p["instance_memory_mb"] and plan_ref and tf["azurerm_service_plan"]["plan"]["sku_name"] == "FC1":
                site_ref = add("azurerm_function_app_flex_consumption", "app", {
                    "name": r.name, "resource_group_name": group, "location": p["location"], "service_plan_id": f"${{{plan_ref}.id}}",
                    "storage_container_type": "blobContainer",
                    "storage_container_endpoint": f"${{data.azurerm_storage_account.home.primary_blob_endpoint}}${{{container_ref}.name}}",
                    "storage_authentication_type": "SystemAssignedIdentity", "runtime_name": p["runtime"],
                    "runtime_version": p["runtime_version"], "instance_memory_in_mb": p["instance_memory_mb"],
                    "maximum_instance_count": p["max_instances"], "app_settings": settings, "identity": {"type": "SystemAssigned"},
                    "site_config": {}, "tags": dict(r.tags)})
            else:
                site_ref = add("azurerm_linux_function_app", "app", {
                    "name": r.name, "resource_group_name": group, "location": p["location"], "service_plan_id": f"${{{plan_ref}.id}}",
                    "storage_account_name": account, "storage_uses_managed_identity": True,
                    "app_settings": settings, "identity": {"type": "SystemAssigned"}, "tags": dict(r.tags),
                    "site_config": {"application_stack": {"python_version": p["runtime_version"]}},
                    "zip_deploy_file": str(artifact.path) if artifact else "build/azure/app.zip"})
        elif r.kind == "azure.authorization.role_assignment":
            add("azurerm_role_assignment", p["role"].lower().replace(" ", "_"), {
                "scope": "${data.azurerm_storage_account.home.id}", "role_definition_name": p["role"],
                "principal_id": f"${{{site_ref}.identity[0].principal_id}}"})
        elif r.kind == "azure.eventgrid.subscription":
            add("azurerm_eventgrid_event_subscription", r.name, {
                "name": r.name, "scope": "${data.azurerm_storage_account.home.id}", "included_event_types": p["event_types"],
                "subject_filter": {"subject_begins_with": p["subject_begins_with"]},
                "webhook_endpoint": {"url": f"https://${{{site_ref}.default_hostname}}/runtime/webhooks/blobs?functionName="
                                            f"Host.Functions.{p['function']}&code=${{var.blobs_extension_key}}"}})
    out: dict[str, Any] = {
        "terraform": {"required_providers": {"azurerm": {"source": "hashicorp/azurerm", "version": ">= 4.0"}}},
        "provider": {"azurerm": {"features": {}, "subscription_id": target.extra.get("subscription")}},
        "data": data, "resource": tf}
    if "azurerm_eventgrid_event_subscription" in tf:
        out["variable"] = {"blobs_extension_key": {"type": "string", "sensitive": True,
                                                   "description": "the app's blobs_extension system key (az functionapp keys list)"}}
    return out


__all__ = ["render", "terraform"]
