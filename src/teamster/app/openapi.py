"""The OpenAPI 3.1 document of the run API, built from the routes and their pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from teamster import __version__
from teamster.app.http import Route
from teamster.app.schemas import ErrorBody

REF = "#/components/schemas/{model}"
ERRORS = {"400": "Invalid request", "401": "Missing or wrong token", "404": "Not found", "409": "Conflict"}


def document(routes: list[Route]) -> dict[str, Any]:
    models = _models(routes)
    keys, schemas = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    refs = {model: keys[(model, "validation")] for model in models}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(_path(route.path), {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "teamster run API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _models(routes: list[Route]) -> list[type[BaseModel]]:
    found: dict[type[BaseModel], None] = {ErrorBody: None}
    for route in routes:
        for model in (route.body, route.reply):
            if model is not None:
                found.setdefault(model)
    return list(found)


def _path(path: str) -> str:
    return "/" + "/".join(f"{{{s[1:]}}}" if s.startswith(":") else s for s in path.split("/") if s)


def _operation(route: Route, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": s[1:], "in": "path", "required": True, "schema": {"type": "string"}}
        for s in route.path.split("/")
        if s.startswith(":")
    ]
    if route.query is not None:
        schema = route.query.model_json_schema()
        required = set(schema.get("required", []))
        params += [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()
        ]
    params += [
        {"name": name, "in": "header", "required": False, "description": text, "schema": {"type": "string"}}
        for name, text in route.header_params
    ]
    operation: dict[str, Any] = {"operationId": route.name.replace("::", "_"), "summary": route.summary}
    if params:
        operation["parameters"] = params
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[route.body]}}}
    operation["responses"] = {str(route.status): _success(route, refs), **_errors(route, refs)}
    for status, text in route.also:
        content = _success(route, refs)["content"] if status < 400 else _error_content(refs)
        operation["responses"][str(status)] = {"description": text, "content": content}
    if not route.public:
        operation["security"] = [{"bearer": []}]
    return operation


def _success(route: Route, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    content: dict[str, Any]
    if route.reply is not None:
        content = {route.media: {"schema": refs[route.reply]}}
    else:
        content = {
            route.media: {"schema": {"type": "string"} if not route.media.startswith("application/json") else {}}
        }
    if route.streams:
        content["text/event-stream"] = {"schema": {"type": "string", "description": "id: <seq> / data: <event JSON>"}}
    return {"description": route.summary, "content": content}


def _error_content(refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    return {"application/json": {"schema": refs[ErrorBody]}}


def _errors(route: Route, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    error = _error_content(refs)
    wanted = ERRORS if not route.public else {"404": ERRORS["404"]}
    return {status: {"description": text, "content": error} for status, text in wanted.items()}
