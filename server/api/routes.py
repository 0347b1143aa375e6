"""The URL map."""

from __future__ import annotations

from aiohttp import web

from server.api import actions, apps, deployments, events, health, hosts, secrets, webhooks
from server.keys import HUB


def setup_routes(app: web.Application) -> None:
    """Map every URL of the API, and the agents' WebSocket, to its handler."""
    r = app.router
    r.add_get("/healthz", health.healthz)
    r.add_get("/readyz", health.readyz)
    r.add_get("/metrics", health.metrics)
    r.add_get("/v1/apps", apps.list_apps)
    r.add_get("/v1/apps/{app}", apps.get_app)
    r.add_get("/v1/apps/{app}/releases", apps.list_releases)
    r.add_post("/v1/apps/{app}/deployments", deployments.create_deployment)
    r.add_get("/v1/apps/{app}/secrets", secrets.list_secrets)
    r.add_put("/v1/apps/{app}/secrets/{name}", secrets.put_secret)
    r.add_delete("/v1/apps/{app}/secrets/{name}", secrets.delete_secret)
    r.add_get("/v1/deployments", deployments.list_deployments)
    r.add_get("/v1/deployments/{id}", deployments.get_deployment)
    r.add_post("/v1/apps/{app}/rollback", actions.rollback)
    r.add_post("/v1/deployments/{id}/pause", actions.pause)
    r.add_post("/v1/deployments/{id}/resume", actions.resume)
    r.add_post("/v1/deployments/{id}/promote", actions.promote)
    r.add_post("/v1/deployments/{id}/cancel", actions.cancel)
    r.add_get("/v1/hosts", hosts.list_hosts)
    r.add_get("/v1/events", events.list_events)
    r.add_post("/v1/webhooks", webhooks.create_webhook)
    r.add_get("/v1/webhooks", webhooks.list_webhooks)
    r.add_delete("/v1/webhooks/{id}", webhooks.delete_webhook)
    r.add_get("/v1/webhooks/{id}/deliveries", webhooks.list_deliveries)
    r.add_get("/v1/agent/connect", app[HUB].handle)
