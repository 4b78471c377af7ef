"""Deploying a nubes app to Google Cloud (Cloud Functions 2nd gen): config checks and the resources.

Resources (kind: name), labelled ``nubes-app = <name>`` where the API has labels (service accounts
and Scheduler jobs carry it in their description instead):

* ``gcp.storage.bucket`` / ``gcp.pubsub.topic``: the home store's bucket, bound sources' buckets and
  bound queue topics. Retained: created when missing, never deleted while they hold data.
* ``gcp.iam.service_account: <name>-nubes``: the functions' identity, with narrow roles:
  ``gcp.storage.bucket_iam`` (``roles/storage.objectUser`` on the home prefix, ``objectViewer`` on
  each source prefix, by IAM condition), ``gcp.project.iam_member`` (``roles/eventarc.eventReceiver``,
  only when there are event triggers) and ``gcp.run.invoker`` on the events function.
* ``gcp.functions.function: <name>`` (target ``main``, HTTP) and ``<name>-events`` (target ``events``)
  when the app has event handlers; the source zip is uploaded through ``generateUploadUrl``.
* ``gcp.run.invoker: <name>`` for ``allUsers`` when ``http = "public"`` (the default).
* ``gcp.eventarc.trigger``: one per watched bucket (``google.cloud.storage.object.v1.finalized``),
  one per bound topic and one for the schedules topic (``...pubsub.topic.v1.messagePublished``).
* ``gcp.pubsub.topic: <name>-schedules`` and ``gcp.scheduler.job: <name>-<schedule>``: Cloud
  Scheduler publishes ``nubes-schedule=<schedule>`` there (five-field unix cron, UTC).
* jobs (only for an app with ``@app.job`` routes; :mod:`.jobs` creates a Cloud Tasks HTTP task to
  the HTTP function): ``gcp.tasks.queue: <name>-jobs`` (``retryConfig.maxAttempts`` = ``[jobs]
  max_attempts``; ``roles/cloudtasks.enqueuer`` on that queue only for the service account), the
  function's ``NUBES_JOBS_QUEUE`` / ``NUBES_JOBS_URL`` (``https://REGION-PROJECT.cloudfunctions.net/NAME``)
  / ``NUBES_JOBS_SERVICE_ACCOUNT``, ``gcp.iam.service_account_iam`` (the account may act as itself,
  ``roles/iam.serviceAccountUser``, to sign the tasks' OIDC tokens) and, when ``http = "private"``,
  ``gcp.run.invoker`` for the account on the HTTP function (``public`` already admits the tasks).

Limits: https://cloud.google.com/functions/docs/configuring/memory and .../configuring/timeout
(checked 2026-12). API calls are :mod:`.deploy_state`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from nubes.adapters import cron as crons
from nubes.adapters.deployment import TAG_VERSION, Artifact, ModuleDeployer, Resource, Target, bindings, jobs, join_key, split_store

LABEL = "nubes-app"
MEMORY_MB = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
HTTP_TIMEOUT_S, EVENT_TIMEOUT_S = 3600, 540
HTTP_FRONTS = ("public", "private", "none")
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
TASKS_BACKOFF = ("10s", "300s")  # the jobs queue's retryConfig minBackoff / maxBackoff
_NAME = re.compile(r"[a-z][a-z0-9-]{0,48}[a-z0-9]\Z")
_TOPIC = re.compile(r"[A-Za-z][A-Za-z0-9._~+%-]{2,254}\Z")


def scheduler_cron(text: str, where: str) -> str:
    """Cloud Scheduler's five-field unix cron (``min hour dom month dow``) for a six-field NCRONTAB."""
    c = crons.parse(text, where)
    form = "range/step"
    return " ".join(crons.compress(c.field(f), f, step_form=form) for f in ("minute", "hour", "day", "month", "weekday"))


def _id(text: str, limit: int) -> str:
    """A GCP resource id: lower-case letters, digits and '-', starting with a letter, at most ``limit``."""
    clean = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if len(clean) > limit:
        clean = clean[: limit - 9].rstrip("-") + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return clean if clean[:1].isalpha() else f"n{clean}"[:limit]


class GcpDeployer(ModuleDeployer):
    """The :class:`nubes.adapters.base.Deployer` of Google Cloud."""

    package = "nubes.adapters.gcp"
    settings = frozenset({"project", "max_instances", "concurrency"})
    whole_numbers = frozenset({"max_instances", "concurrency"})
    export_formats = ("terraform",)

    def validate(self, app: Any, target: Target) -> list[str]:
        from nubes.errors import ConfigError

        p: list[str] = []
        where = target.where
        if not target.extra.get("project"):
            p.append(f"{where('project')} is missing: add project = \"my-project-id\"")
        if not target.region:
            p.append(f"{where('region')} is missing: add region = \"europe-west1\"")
        if not _NAME.match(target.name):
            p.append(f"{where('name')} {target.name!r}: a function name here is 2-50 lower-case letters, digits or '-', "
                     "starting with a letter")
        if split_store(target.storage)[0] != "gs":
            p.append(f"{where('storage')} {target.storage!r}: the home store on Google Cloud is a gs:// URI")
        if target.memory is not None and target.memory not in MEMORY_MB:
            p.append(f"{where('memory')} = {target.memory}: Cloud Functions offers {', '.join(map(str, MEMORY_MB))} MB")
        found, _ = bindings(app, target)
        if target.timeout is not None:
            limit = EVENT_TIMEOUT_S if not found.empty and target.timeout > EVENT_TIMEOUT_S else HTTP_TIMEOUT_S
            if target.timeout > limit:
                p.append(f"{where('timeout')} = {target.timeout}: Cloud Functions allows {limit} s"
                         + (" for event-driven functions" if limit == EVENT_TIMEOUT_S else ""))
        if target.architecture not in (None, "x86_64"):
            p.append(f"{where('architecture')} = {target.architecture!r}: Cloud Functions runs x86_64 only; remove it")
        if (target.http or "public") not in HTTP_FRONTS:
            p.append(f"{where('http')} = {target.http!r}: use one of {', '.join(HTTP_FRONTS)}")
        for key in target.routes:
            p.append(f"[deploy.gcp.routes.{key!r}]: one Cloud Function serves every route with one timeout and memory; "
                     "set them in [deploy.gcp]")
        for uri in target.sources.values():
            if split_store(uri)[0] != "gs":
                p.append(f"[deploy.gcp.sources] {uri!r}: sources on Google Cloud are gs:// URIs")
        for logical, topic in target.queues.items():
            if not _TOPIC.match(topic) or topic.startswith("goog"):
                p.append(f"[deploy.gcp.queues] {logical} = {topic!r}: a Pub/Sub topic id is 3-255 characters starting with "
                         "a letter, not 'goog'")
        for store in found.objects:
            if not store.startswith("gs://"):
                p.append(f"an object-created handler is bound to {store!r}; on Google Cloud bind it to a gs:// source")
        for name, cron in found.schedules.items():
            try:
                scheduler_cron(cron, f"schedule {name!r}")
            except ConfigError as exc:
                p.append(str(exc))
        needs = jobs(app)
        if needs is not None and (target.http or "public") == "none":
            p.append(f"{where('http')} = \"none\": the app has jobs ({', '.join(needs.routes)}), which Cloud Tasks runs "
                     "through the HTTP function; use http = \"private\" (or public)")
        if needs is not None and needs.max_attempts < 1:
            p.append(f"[jobs] max_attempts = {needs.max_attempts}: a job needs at least one attempt")
        return p

    @staticmethod
    def jobs_queue(target: Target) -> str:
        """The Cloud Tasks queue id of the deployment's jobs."""
        return f"{_id(target.name, 50)}-jobs"

    def _jobs(self, app: Any, target: Target, member: str) -> tuple[dict[str, str], list[Resource]]:
        """The environment and the resources an app's jobs need (none without jobs)."""
        needs = jobs(app)
        if needs is None:
            return {}, []
        project, region, sa = target.extra.get("project"), target.region, self.service_account(target)
        env = {"NUBES_JOBS_QUEUE": f"projects/{project}/locations/{region}/queues/{self.jobs_queue(target)}",
               "NUBES_JOBS_URL": f"https://{region}-{project}.cloudfunctions.net/{target.name}", "NUBES_JOBS_SERVICE_ACCOUNT": sa}
        out = [Resource("gcp.tasks.queue", self.jobs_queue(target), {
                   "region": region, "max_attempts": needs.max_attempts, "min_backoff": TASKS_BACKOFF[0],
                   "max_backoff": TASKS_BACKOFF[1], "enqueuers": [member]}, {}, rank=2, info={"jobs": list(needs.routes)}),
               Resource("gcp.iam.service_account_iam", sa, {"role": "roles/iam.serviceAccountUser", "member": member}, {}, rank=2)]
        if (target.http or "public") == "private":
            out.append(Resource("gcp.run.invoker", target.name, {"members": [member], "region": region}, {}, rank=4))
        return env, out

    def service_account(self, target: Target) -> str:
        return f"{_id(target.name, 24)}-nubes@{target.extra.get('project')}.iam.gserviceaccount.com"

    def desired(self, app: Any, target: Target, artifact: Artifact | None) -> list[Resource]:
        project, region, name = target.extra.get("project"), target.region, target.name
        labels = {LABEL: name}
        found, _ = bindings(app, target)
        sa = self.service_account(target)
        member = f"serviceAccount:{sa}"
        _, home, home_prefix = split_store(target.storage)
        out: list[Resource] = []
        buckets = dict.fromkeys([home, *(split_store(u)[1] for u in target.sources.values()),
                                 *(split_store(s)[1] for s in found.objects)])
        out += [Resource("gcp.storage.bucket", b, {}, {}, rank=0, retain=True) for b in buckets]
        out += [Resource("gcp.pubsub.topic", t, {}, {}, rank=0, retain=True) for t in dict.fromkeys(target.queues.values())]
        if found.schedules:
            out.append(Resource("gcp.pubsub.topic", f"{_id(name, 50)}-schedules", {}, labels, rank=0))
        out.append(Resource("gcp.iam.service_account", sa, {"description": f"nubes app {name}"}, {}, rank=1))
        grants: dict[str, list[dict[str, str]]] = {}
        grants.setdefault(home, []).append(_grant("roles/storage.objectUser", member, home, home_prefix, f"nubes-{name}-home"))
        reads: dict[str, set[str]] = {}
        for uri in target.sources.values():
            _, b, p = split_store(uri)
            reads.setdefault(b, set()).add(p)
        for store, watched in found.objects.items():
            for p in watched:
                reads.setdefault(split_store(store)[1], set()).add(p.strip("/"))
        for b, prefixes in sorted(reads.items()):
            for i, p in enumerate(sorted(prefixes)):
                grants.setdefault(b, []).append(_grant("roles/storage.objectViewer", member, b, p, f"nubes-{name}-read-{i}"))
        out += [Resource("gcp.storage.bucket_iam", b, {"member": member, "bindings": g}, {}, rank=2) for b, g in grants.items()]
        jobs_env, jobs_resources = self._jobs(app, target, member)
        out += jobs_resources
        env = {"NUBES_STORAGE": target.storage, **target.environment, **jobs_env}
        base = {"runtime": f"python{(artifact.python if artifact else '3.12').replace('.', '')}", "region": region,
                "project": project, "memory_mb": target.memory or 1024, "environment": env, "service_account": sa,
                "max_instances": int(target.extra.get("max_instances", 100)), "concurrency": int(target.extra.get("concurrency", 1)),
                "code_sha256": artifact.sha256 if artifact else None}
        fn_labels = {**labels, TAG_VERSION.replace(":", "-"): _label(str(getattr(app, "version", "")))}
        front = target.http or "public"
        if front != "none":
            out.append(Resource("gcp.functions.function", name, {**base, "entry_point": "main",
                                                                  "timeout": target.timeout or 60}, fn_labels, rank=3))
            if front == "public":
                out.append(Resource("gcp.run.invoker", name, {"members": ["allUsers"], "region": region}, {}, rank=4))
        if found.empty:
            return out
        events = f"{_id(name, 43)}-events"
        out.append(Resource("gcp.functions.function", events, {**base, "entry_point": "events",
                                                                "timeout": min(target.timeout or 60, EVENT_TIMEOUT_S)},
                            fn_labels, rank=3))
        out.append(Resource("gcp.run.invoker", events, {"members": [member], "region": region}, {}, rank=4))
        out.append(Resource("gcp.project.iam_member", "roles/eventarc.eventReceiver", {"member": member, "project": project},
                            {}, rank=2))
        trigger = {"service": events, "region": region, "service_account": sa, "path": "/"}
        for store in found.objects:
            bucket = split_store(store)[1]
            out.append(Resource("gcp.eventarc.trigger", _id(f"{name}-{bucket}", 63), {
                **trigger, "event_type": STORAGE_FINALIZED, "filters": {"bucket": bucket}, "topic": None}, labels, rank=5))
        topics = [*found.queues, *([f"{_id(name, 50)}-schedules"] if found.schedules else [])]
        for topic in topics:
            out.append(Resource("gcp.eventarc.trigger", _id(f"{name}-{topic}", 63), {
                **trigger, "event_type": PUBSUB_PUBLISHED, "filters": {},
                "topic": f"projects/{project}/topics/{topic}"}, labels, rank=5))
        for schedule, cron in found.schedules.items():
            out.append(Resource("gcp.scheduler.job", _id(f"{name}-{schedule}", 500), {
                "schedule": scheduler_cron(cron, f"schedule {schedule!r}"), "time_zone": "Etc/UTC", "region": region,
                "topic": f"projects/{project}/topics/{_id(name, 50)}-schedules", "attributes": {"nubes-schedule": schedule},
                "description": f"nubes app {name}: schedule {schedule}"}, {}, rank=5))
        return out

    def endpoint(self, resources: list[Resource]) -> str | None:
        urls = [str(r.outputs["url"]) for r in resources if r.kind == "gcp.functions.function" and r.outputs.get("url")
                and r.properties.get("entry_point") == "main"]
        return urls[0] if urls else None


def _label(value: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def _grant(role: str, member: str, bucket: str, prefix: str, title: str) -> dict[str, str]:
    objects = f"projects/_/buckets/{bucket}/objects/"
    start = join_key(prefix) + "/" if prefix else ""
    return {"role": role, "member": member, "title": title,
            "expression": f'resource.name.startsWith("{objects}{start}") || resource.type == "storage.googleapis.com/Bucket"'}


DEPLOYER = GcpDeployer()

__all__ = ["DEPLOYER", "GcpDeployer", "scheduler_cron"]
