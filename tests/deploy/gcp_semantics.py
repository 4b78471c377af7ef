"""What the GCP double does with a request that passed the discovery check: an in-memory store.

Keys are resource names (``projects/p/locations/r/functions/f``); buckets are ``b/<name>``. Only the
methods nubes' deploy calls are served; any other valid method is a 501 (recorded as a violation).
"""

from __future__ import annotations

import re
from typing import Any

NOT_FOUND = 404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
CONFLICT = 409, {"error": {"code": 409, "message": "already exists", "status": "ALREADY_EXISTS"}}


def _camel(path: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def _operation(double: Any, api: str, resource: dict[str, Any]) -> tuple[int, Any]:
    from tests.deploy.gcp_double import LRO_TYPES

    return 200, {"name": f"operations/op-{double.ids()}", "done": True, "response": {"@type": LRO_TYPES[api], **resource}}


def _empty_operation(double: Any) -> tuple[int, Any]:
    return 200, {"name": f"operations/op-{double.ids()}", "done": True, "response": {"@type": "type.googleapis.com/google.protobuf.Empty"}}


def serve(double: Any, method: Any, groups: tuple[str, ...], query: dict[str, str], body: Any) -> tuple[int, Any]:
    mid, store = method.id, double.store
    verb = mid.rsplit(".", 1)[1]
    if mid == "cloudfunctions.projects.locations.functions.generateUploadUrl":
        token = f"src-{double.ids()}"
        return 200, {"uploadUrl": f"{double.endpoint}/upload/{token}",
                     "storageSource": {"bucket": "gcf-v2-uploads", "object": f"{token}.zip"}}
    if mid.startswith(("cloudfunctions.projects.locations.functions.", "eventarc.projects.locations.triggers.",
                       "cloudscheduler.projects.locations.jobs.")):
        api = mid.split(".", 1)[0]
        collection = mid.split(".")[-2]
        parent = f"projects/{groups[0]}/locations/{groups[1]}"
        if verb == "list":
            items = [v for k, v in store.items() if k.startswith(f"{parent}/{collection}/")]
            return 200, {collection: items}
        if verb == "create":
            id_param = {"functions": "functionId", "triggers": "triggerId"}.get(collection, "")
            ident = query.get(id_param, "") or body["name"].rsplit("/", 1)[1]
            name = f"{parent}/{collection}/{ident}"
            if name in store:
                return CONFLICT
            resource = {**body, "name": name}
            if collection == "functions":
                if not double.uploads.get(body["buildConfig"]["source"]["storageSource"]["object"].removesuffix(".zip")):
                    return 400, {"error": {"code": 400, "message": "source not uploaded"}}
                resource["state"] = "ACTIVE"
                resource["serviceConfig"] = {**resource["serviceConfig"], "uri": f"https://{ident}-x.a.run.app"}
                double.policies[f"{parent}/services/{ident}"] = {"bindings": [], "etag": "BwE="}
            store[name] = resource
            return (200, resource) if collection == "jobs" else _operation(double, api, resource)
        name = f"{parent}/{collection}/{groups[2]}"
        if name not in store:
            return NOT_FOUND
        if verb == "get":
            return 200, store[name]
        if verb == "delete":
            gone = store.pop(name)
            double.policies.pop(f"{parent}/services/{groups[2]}", None)
            if collection == "jobs":
                return 200, {}
            return _operation(double, api, gone) if api == "eventarc" else _empty_operation(double)  # as each API declares
        if verb == "patch":
            mask = [_camel(p) for p in query.get("updateMask", "").split(",") if p] or list(body)
            current = dict(store[name])
            for key in mask:
                top = key.split(".")[0]
                if top in body:
                    current[top] = body[top] if top != "serviceConfig" else {**body[top], "uri": current[top].get("uri")}
            store[name] = current
            return (200, current) if collection == "jobs" else _operation(double, api, current)
    if mid.startswith("pubsub.projects.topics."):
        name = f"projects/{groups[0]}/topics/{groups[1]}"
        if verb == "create":
            if name in store:
                return CONFLICT
            store[name] = {**(body or {}), "name": name}
            return 200, store[name]
        if name not in store:
            return NOT_FOUND
        if verb == "delete":
            del store[name]
            return 200, {}
        return 200, store[name]
    if mid.startswith("cloudtasks.projects.locations.queues."):
        return _queue(double, verb, groups, query, body)
    if mid in ("iam.projects.serviceAccounts.getIamPolicy", "iam.projects.serviceAccounts.setIamPolicy"):
        name = f"projects/{groups[0]}/serviceAccounts/{groups[1]}"
        if name in store:
            double.policies.setdefault(name, {"etag": "BwE="})
        return _policy(double, name, verb, body)
    if mid.startswith("iam.projects.serviceAccounts."):
        project = groups[0]
        if verb == "create":
            email = f"{body['accountId']}@{project}.iam.gserviceaccount.com"
            name = f"projects/{project}/serviceAccounts/{email}"
            if name in store:
                return CONFLICT
            store[name] = {**body.get("serviceAccount", {}), "name": name, "email": email, "projectId": project}
            return 200, store[name]
        name = f"projects/{project}/serviceAccounts/{groups[1]}"
        if name not in store:
            return NOT_FOUND
        if verb == "delete":
            del store[name]
            double.policies.pop(name, None)
            return 200, {}
        if verb == "patch":
            store[name] = {**store[name], **body["serviceAccount"]}
        return 200, store[name]
    if mid in ("run.projects.locations.services.getIamPolicy", "run.projects.locations.services.setIamPolicy"):
        name = f"projects/{groups[0]}/locations/{groups[1]}/services/{groups[2]}"
        return _policy(double, name, verb, body)
    if mid in ("cloudresourcemanager.projects.getIamPolicy", "cloudresourcemanager.projects.setIamPolicy"):
        name = f"projects/{groups[0]}"
        double.policies.setdefault(name, {"bindings": [{"role": "roles/owner", "members": ["user:owner@example.com"]}],
                                          "etag": "BwE="})
        return _policy(double, name, verb, body)
    if mid.startswith("storage.buckets."):
        name = f"b/{groups[0]}" if groups else f"b/{body['name']}"
        if verb == "insert":
            if name in store:
                return CONFLICT
            store[name] = {**body, "kind": "storage#bucket", "id": body["name"]}
            double.policies[name] = {"bindings": [], "etag": "CAE=", "version": 1}
            return 200, store[name]
        if name not in store:
            return NOT_FOUND
        if verb in ("getIamPolicy", "setIamPolicy"):
            return _policy(double, name, verb, body)
        if verb == "delete":
            del store[name]
            return 204, {}
        return 200, store[name]
    if mid == "storage.objects.list":
        return 200, {"kind": "storage#objects", "items": []}
    double.violations.append(f"{mid}: valid, but not served by the double")
    return 501, {"error": {"code": 501, "message": f"{mid} not served"}}


def _queue(double: Any, verb: str, groups: tuple[str, ...], query: dict[str, str], body: Any) -> tuple[int, Any]:
    """Cloud Tasks queues: create (409 if it exists), get, patch by updateMask, delete, and their IAM policy."""
    store, parent = double.store, f"projects/{groups[0]}/locations/{groups[1]}"
    if verb == "create":
        name = body.get("name", "")
        if not name.startswith(f"{parent}/queues/"):
            return 400, {"error": {"code": 400, "message": f"queue name {name!r} is not under {parent}", "status": "INVALID_ARGUMENT"}}
        if name in store:
            return CONFLICT
        store[name] = {**body, "state": "RUNNING"}
        double.policies[name] = {"etag": "BwE="}
        return 200, store[name]
    name = f"{parent}/queues/{groups[2]}"
    if name not in store:
        return NOT_FOUND
    if verb in ("getIamPolicy", "setIamPolicy"):
        return _policy(double, name, verb, body)
    if verb == "delete":
        del store[name]
        double.policies.pop(name, None)
        return 200, {}
    if verb == "patch":
        for key in (_camel(k).split(".")[0] for k in query.get("updateMask", "").split(",") if k):
            if key in body:
                store[name][key] = body[key]
    return 200, store[name]


def _policy(double: Any, name: str, verb: str, body: Any) -> tuple[int, Any]:
    if name not in double.policies:
        return NOT_FOUND
    if verb == "setIamPolicy":
        policy = body.get("policy", body) if isinstance(body, dict) else {}
        double.policies[name] = {**policy, "etag": f"Bw{double.ids()}="}
    return 200, double.policies[name]
