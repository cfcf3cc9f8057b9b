"""`kinema loras`: the LoRAs this deployment offers requests, by model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kinema.catalog.loras import every_offered
from kinema.catalog.registry import MODELS
from kinema.cli.app import AsJson, app, stdout_console
from kinema.wiring import make_settings

LoraDir = Annotated[
    Path | None,
    typer.Option("--lora-dir", envvar="KINEMA_LORA_DIR", help="<dir>/<model>/<name>.safetensors"),
]


@app.command()
def loras(lora_dir: LoraDir = None, as_json: AsJson = False) -> None:
    """List the LoRAs a request may name (`"loras": [{"name": …, "scale": …}]`): the files in
    KINEMA_LORA_DIR, one folder per model architecture, and the models each folder serves."""
    folder_root = make_settings(lora_dir=lora_dir).lora_dir
    entries = [
        OfferedLora(name, folder, models_of(folder), path.stat().st_size)
        for folder, files in every_offered(folder_root).items()
        for name, path in files.items()
    ]
    if as_json:
        print(json.dumps([asdict(entry) for entry in entries]))
        return
    if not entries:
        where = f"in {folder_root}" if folder_root else "here: KINEMA_LORA_DIR is not set"
        stdout_console().print(
            f"No LoRAs {where}. A request may name the files "
            "<KINEMA_LORA_DIR>/<model>/<name>.safetensors (e.g. ltx-2/film-grain.safetensors)."
        )
        return
    where = str(folder_root)
    table = Table("name", "for models", "file size", caption=f"LoRA folder: {where}")
    for entry in entries:
        models = ", ".join(entry.models) or f"no model uses {entry.folder}/"
        table.add_row(entry.name, models, f"{entry.file_size / 1e6:.1f} MB")
    stdout_console().print(table)


@dataclass(frozen=True)
class OfferedLora:
    name: str
    folder: str
    models: list[str]
    file_size: int


def models_of(folder: str) -> list[str]:
    return [spec.id for spec in MODELS.values() if spec.loras_folder == folder]
