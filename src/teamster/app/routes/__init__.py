"""The run API's routes, one module per resource."""

from __future__ import annotations

from teamster.app.context import App
from teamster.app.http import Route
from teamster.app.routes import compat, meta, models, runs, sessions


def all_routes(app: App) -> list[Route]:
    found = [*runs.routes(app), *sessions.routes(app), *models.routes(app), *compat.routes(app)]
    return [*found, *meta.routes(app, found)]
