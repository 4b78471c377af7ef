"""What the Azure double does with a request that passed the model check: ARM's semantics, in memory."""

from __future__ import annotations

import uuid
from typing import Any

NOT_FOUND = 404, {"error": {"code": "ResourceNotFound", "message": "not found"}}


def serve(double: Any, verb: str, path: str, match: Any, data: Any) -> tuple[int, Any]:
    store = double.store
    if path.endswith("/config/appsettings/list"):
        site = path[: -len("/config/appsettings/list")]
        if site not in store:
            return NOT_FOUND
        return 200, store.get(site + "/config/appsettings", {"properties": {}})
    if path.endswith("/host/default/listkeys"):
        return 200, {"masterKey": "master", "functionKeys": {}, "systemKeys": {"blobs_extension": "blobs-key"}}
    if verb == "GET":
        return (200, store[path]) if path in store else NOT_FOUND
    if verb == "DELETE":  # 204 is the status every delete nubes calls declares (queues declare only 204)
        for key in [k for k in store if k == path or k.startswith(path + "/")]:  # with its child resources
            del store[key]
        return 204, {}
    if verb == "PATCH":
        if path not in store:
            return NOT_FOUND
        current = store[path]
        current["tags"] = {**current.get("tags", {}), **(data.get("tags") or {})}
        return 200, current
    created = path not in store
    resource = {**(data or {}), "id": path, "name": match.groupdict().get("name") or match.groupdict().get("account")}
    props = resource.setdefault("properties", {})
    if "/Microsoft.Web/sites/" in path and "/config/" not in path:
        old = store.get(path, {})
        props.update(defaultHostName=f"{resource['name']}.azurewebsites.net", provisioningState="Succeeded")
        identity = resource.get("identity") or {}
        if identity:
            resource["identity"] = {**identity, "principalId": (old.get("identity") or {}).get("principalId") or str(uuid.uuid4()),
                                    "tenantId": "tenant"}
        props.pop("siteConfig", None)  # ARM does not echo siteConfig on PUT; app settings are read with appsettings/list
    elif "/config/appsettings" in path:
        resource = {"properties": dict(data.get("properties") or {}), "id": path, "name": "appsettings"}
    else:
        props["provisioningState"] = "Succeeded"
    store[path] = resource
    if "/config/appsettings" not in path and "/Microsoft.Web/sites/" in path and data.get("properties", {}).get("siteConfig"):
        settings = {p["name"]: p["value"] for p in data["properties"]["siteConfig"].get("appSettings", [])}
        store[path + "/config/appsettings"] = {"properties": settings, "id": path + "/config/appsettings", "name": "appsettings"}
    # the status each operation declares for a new resource (its SDK refuses others); 200 for an update
    created_status = 201 if any(p in path for p in ("/Microsoft.EventGrid/", "/Microsoft.Authorization/", "/containers/")) else 200
    return (created_status if created or "/Microsoft.EventGrid/" in path else 200), resource
