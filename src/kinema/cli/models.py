"""`kinema models`: the models kinema knows, marked by what is served."""

from __future__ import annotations

import json
from typing import Any

import httpx
from rich.table import Table
from rich.text import Text

from kinema.catalog.registry import HOSTED_ALIASES, canonical_id, known_models
from kinema.cli.app import AsJson, Model, Server, app, explained, fail, stdout_console
from kinema.errors import KinemaError, ModelUnavailable
from kinema.wiring import make_settings, served_models


@app.command()
def models(
    server: Server = None,
    model: Model = None,
    as_json: AsJson = False,
) -> None:
    """List every model and preset kinema can serve, marking what is served now: by this
    machine's configuration (KINEMA_MODEL or --model), or with --server by that server."""
    try:
        served = _served_model_entries(server, model)
    except (KinemaError, httpx.HTTPError) as exc:
        raise fail(explained(exc, server)) from None
    entries = _model_catalog(served)
    if as_json:
        print(json.dumps(entries))
        return
    where = f"by {server}" if server else "here (KINEMA_MODEL or --model)"
    counted = any("live_workers" in entry for entry in entries)  # a server counts them
    columns = ["id", "served", *(["live workers"] if counted else []), "serves as", "sound"]
    table = Table(
        *columns,
        "GPU memory",
        "description",
        caption=f"served: {where}; GPU memory: the weights in bf16, from parameter counts",
    )
    for entry in entries:
        mark = Text("yes", style="green") if entry["served"] else ""
        workers = [_workers(entry)] if counted else []
        facts = (entry.get(key, "") for key in ("alias_of", "sound", "gpu_memory", "description"))
        table.add_row(entry["id"], mark, *workers, *facts)
    stdout_console().print(table)


def _workers(entry: dict[str, Any]) -> Text | str:
    live = entry.get("live_workers")
    if live is None:
        return ""
    return Text("none", style="yellow") if live == 0 else str(live)


def _model_catalog(served: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Every model and preset kinema knows, plus whatever else is served (a newer server's
    models, the Kling ids), each marked `served`; served first, the Kling ids last of those."""
    served_ids = {entry["id"] for entry in served}
    known = known_models()
    known_by_id = {entry["id"]: entry for entry in known}
    others = [entry for entry in known if entry["id"] not in served_ids]
    entries = [
        {
            **known_by_id.get(entry["id"], {}),
            **entry,
            "served": entry["id"] in served_ids or canonical_id(entry["id"]) in served_ids,
        }
        for entry in [*served, *others]
    ]
    return sorted(entries, key=lambda entry: (not entry["served"], entry["id"] in HOSTED_ALIASES))


def _served_model_entries(server: str | None, model: str | None) -> list[dict[str, str]]:
    if server:
        response = httpx.get(f"{server.rstrip('/')}/v1/models", timeout=10)
        response.raise_for_status()
        return response.json()["data"]
    from kinema.catalog.registry import ServedModels

    try:
        return ServedModels.of(served_models(make_settings(model=model))).catalog()
    except ModelUnavailable as exc:
        raise KinemaError(f"--model: {exc}") from None
