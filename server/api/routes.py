"""The URL map. Each API route has a name: the audit log's `action`."""

from __future__ import annotations

from aiohttp import web

from server.api import (
    actions,
    apps,
    audit,
    deployments,
    events,
    health,
    hosts,
    logs,
    openapi,
    policies,
    registries,
    releases,
    secrets,
    tokens,
    webhooks,
)
from server.keys import HUB


def setup_routes(app: web.Application) -> None:
    """Map every URL of the API, and the agents' WebSocket, to its handler."""
    r = app.router
    r.add_get("/healthz", health.healthz, name="healthz")
    r.add_get("/readyz", health.readyz, name="readyz")
    r.add_get("/metrics", health.metrics, name="metrics")
    # every route is described in server/api/operations.py, under its name
    r.add_get("/v1/openapi.json", openapi.openapi_json, name="openapi")
    r.add_get("/docs", openapi.docs, name="docs")
    r.add_get("/docs/assets/{file}", openapi.asset, name="docs.asset")
    app[openapi.DOCUMENT] = openapi.Cached()
    r.add_get("/v1/apps", apps.list_apps, name="app.list")
    r.add_get("/v1/apps/{app}", apps.get_app, name="app.get")
    r.add_delete("/v1/apps/{app}", apps.remove_app, name="app.remove")
    r.add_get("/v1/apps/{app}/releases", apps.list_releases, name="release.list")
    # streams: a HEAD would open one (to agents, for logs) only to send nothing of it
    r.add_get("/v1/apps/{app}/logs", logs.stream_logs, name="app.logs", allow_head=False)
    r.add_get("/v1/apps/{app}/releases/{n}/diff", releases.release_diff, name="release.diff")
    r.add_post(
        "/v1/apps/{app}/deployments", deployments.create_deployment, name="deployment.create"
    )
    r.add_get("/v1/apps/{app}/policy", policies.get_policy, name="policy.get")
    r.add_put("/v1/apps/{app}/policy", policies.put_policy, name="policy.set")
    r.add_get("/v1/apps/{app}/secrets", secrets.list_secrets, name="secret.list")
    r.add_put("/v1/apps/{app}/secrets/{name}", secrets.put_secret, name="secret.set")
    r.add_delete("/v1/apps/{app}/secrets/{name}", secrets.delete_secret, name="secret.remove")
    r.add_get("/v1/deployments", deployments.list_deployments, name="deployment.list")
    r.add_get("/v1/deployments/{id}", deployments.get_deployment, name="deployment.get")
    r.add_post("/v1/apps/{app}/rollback", actions.rollback, name="app.rollback")
    r.add_post("/v1/deployments/{id}/pause", actions.pause, name="deployment.pause")
    r.add_post("/v1/deployments/{id}/resume", actions.resume, name="deployment.resume")
    r.add_post("/v1/deployments/{id}/promote", actions.promote, name="deployment.promote")
    r.add_post("/v1/deployments/{id}/cancel", actions.cancel, name="deployment.cancel")
    r.add_get("/v1/hosts", hosts.list_hosts, name="host.list")
    r.add_post("/v1/hosts", hosts.add_host, name="host.add")
    r.add_post("/v1/hosts/{name}/token", hosts.rotate_token, name="host.rotate_token")
    r.add_delete("/v1/hosts/{name}", hosts.remove_host, name="host.remove")
    r.add_post("/v1/hosts/{name}/cordon", hosts.cordon, name="host.cordon")
    r.add_post("/v1/hosts/{name}/uncordon", hosts.uncordon, name="host.uncordon")
    r.add_post("/v1/hosts/{name}/drain", hosts.drain, name="host.drain")
    r.add_get("/v1/events", events.list_events, name="event.list")
    r.add_get("/v1/events/stream", events.stream_events, name="event.stream", allow_head=False)
    r.add_post("/v1/tokens", tokens.create_token, name="token.create")
    r.add_get("/v1/tokens", tokens.list_tokens, name="token.list")
    r.add_delete("/v1/tokens/{name}", tokens.revoke_token, name="token.revoke")
    r.add_get("/v1/audit", audit.list_audit, name="audit.list")
    r.add_post("/v1/registries", registries.put_registry, name="registry.set")
    r.add_get("/v1/registries", registries.list_registries, name="registry.list")
    r.add_delete("/v1/registries/{registry}", registries.delete_registry, name="registry.remove")
    r.add_post("/v1/webhooks", webhooks.create_webhook, name="webhook.create")
    r.add_get("/v1/webhooks", webhooks.list_webhooks, name="webhook.list")
    r.add_delete("/v1/webhooks/{id}", webhooks.delete_webhook, name="webhook.delete")
    r.add_get("/v1/webhooks/{id}/deliveries", webhooks.list_deliveries, name="webhook.deliveries")
    r.add_get("/v1/agent/connect", app[HUB].handle, name="agent.connect", allow_head=False)
