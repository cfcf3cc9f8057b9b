"""What a new user trips on in `kinema generate` and `kinema models`, caught before anything
loads: the output path, the options (named by flag), the server URL, the model list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from kinema.catalog.registry import KLING_ALIASES, MODELS, PRESET_ALIASES
from kinema.cli import app
from tests.conftest import free_port

runner = CliRunner()


def generate_here(data_dir: Path, *args: str) -> Result:
    """`kinema generate` without --server: it would open `data_dir` and load the tiny model."""
    return runner.invoke(
        app, ["generate", "a fox", "--model", "tiny-ltx2", "--data-dir", str(data_dir), *args]
    )


def words(text: str) -> str:
    """The text as one line: the console wraps at 80 columns and boxes usage errors."""
    return " ".join(text.replace("│", " ").split())


def test_an_output_in_a_missing_folder_is_refused_before_anything_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = generate_here(data_dir, "-o", str(tmp_path / "no" / "such" / "x.mp4"))
    assert result.exit_code == 2
    assert "--output" in result.output
    assert f"the folder {tmp_path / 'no' / 'such'} does not exist" in words(result.output)
    assert not data_dir.exists()  # no database opened, no model loaded, nothing submitted


def test_an_output_naming_a_directory_is_refused_with_an_example(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = generate_here(data_dir, "-o", str(tmp_path))
    assert result.exit_code == 2
    assert f"{tmp_path} is a directory; name the file to write" in words(result.output)
    assert str(tmp_path / "clip.mp4") in words(result.output)
    assert not data_dir.exists()


def test_invalid_options_are_named_by_their_flags_before_the_model_loads(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    out = str(tmp_path / "x.mp4")
    result = generate_here(data_dir, "-o", out, "--duration", "7", "--aspect-ratio", "4:3")
    assert result.exit_code == 1
    said = words(result.stderr)
    assert "--duration: must be 5 or 10" in said
    assert "--aspect-ratio: Input should be '16:9', '9:16' or '1:1'" in said
    assert "aspect_ratio" not in said and "strings" not in said
    cfg = generate_here(data_dir, "-o", out, "--cfg-scale", "3")
    assert cfg.exit_code == 1 and "--cfg-scale: " in cfg.stderr
    assert not data_dir.exists()


def test_an_unknown_local_model_is_refused_before_anything_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = runner.invoke(
        app,
        ["generate", "a fox", "--model", "nope", "--data-dir", str(data_dir), "-o", "x.mp4"],
    )
    assert result.exit_code == 1
    assert "--model: unknown model 'nope'" in words(result.stderr)
    assert "tiny-ltx2" in result.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize("command", [["generate", "p", "-o", "x.mp4"], ["jobs", "list"]])
def test_a_server_url_without_scheme_is_refused_with_a_suggestion(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--server", "localhost:8000"])
    assert result.exit_code == 2
    assert "'localhost:8000' is not an http:// or https:// URL" in words(result.output)
    assert "did you mean http://localhost:8000" in words(result.output)


@pytest.mark.parametrize("command", [["generate", "p", "-o", "x.mp4"], ["jobs", "list"]])
def test_a_server_that_is_not_there_is_named_by_its_url(command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, [*command, "--server", url, "--api-key", "k"])
    assert result.exit_code == 1
    message = words(result.stderr)
    assert f"cannot connect to the server at {url}" in message
    assert "Connection refused" in message and "KINEMA_SERVER" in message


def test_models_lists_every_model_and_preset_marking_the_served_ones() -> None:
    result = runner.invoke(app, ["models", "--model", "tiny-ltx2", "--json"])
    assert result.exit_code == 0, result.output
    entries = {entry["id"]: entry for entry in json.loads(result.stdout)}
    assert set(entries) == {*MODELS, *PRESET_ALIASES, *KLING_ALIASES}
    served = {model_id for model_id, entry in entries.items() if entry["served"]}
    assert served == {"tiny-ltx2", "tiny-ltx2:fast", *KLING_ALIASES}
    assert entries["ltx-2:quality"]["description"].startswith("LTX-2 quality")
    assert entries["ltx-2:fast"]["alias_of"] == "ltx-2"


def test_models_as_a_table_shows_the_presets_and_what_is_served() -> None:
    result = runner.invoke(app, ["models", "--model", "ltx-2:quality"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "yes" in rows["ltx-2:quality"] and "yes" not in rows["ltx-2"]
    assert "yes" not in rows["tiny-ltx2"] and "tiny-ltx2:quality" in rows
    assert "served: here" in result.stdout
