"""What a new user trips on in `kinema generate` and `kinema models`, caught before anything
loads: the output path, the options (named by flag), the server URL, the model list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from kinema.catalog.registry import HOSTED_ALIASES, MODELS, PRESET_ALIASES
from kinema.cli import app
from tests.conftest import free_port

# Wide enough that no temporary path is wrapped (inside a word, the console breaks it anywhere).
runner = CliRunner(env={"COLUMNS": "400"})


def generate_here(data_dir: Path, *args: str) -> Result:
    """`kinema generate` without --server: it would open `data_dir` and load the tiny model."""
    return runner.invoke(
        app, ["generate", "a fox", "--model", "tiny-ltx2", "--data-dir", str(data_dir), *args]
    )


def words(text: str) -> str:
    """The text as one line: the console wraps long lines and boxes usage errors."""
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
    result = generate_here(data_dir, "-o", out, "--duration", "0", "--aspect-ratio", "4:3")
    assert result.exit_code == 1
    said = words(result.stderr)
    assert "--duration: Input should be greater than 0" in said
    assert "--aspect-ratio: Input should be '16:9', '9:16' or '1:1'" in said
    assert "aspect_ratio" not in said and "strings" not in said
    cfg = generate_here(data_dir, "-o", out, "--cfg-scale", "3")
    assert cfg.exit_code == 1 and "--cfg-scale: " in cfg.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize("size", ["128", "128x", "x64", "0x64", "128x64x2", "wide"])
def test_a_size_that_is_not_w_by_h_is_refused_naming_the_flag(tmp_path: Path, size: str) -> None:
    data_dir = tmp_path / "data"
    result = generate_here(data_dir, "-o", str(tmp_path / "x.mp4"), "--size", size)
    assert result.exit_code == 1
    assert f"--size: {size!r} is not WIDTHxHEIGHT in pixels, e.g. 1280x720" in words(result.stderr)
    assert not data_dir.exists()


def test_lengths_sizes_and_rates_the_model_cannot_make_are_refused_by_flag(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    out = str(tmp_path / "x.mp4")
    zero = generate_here(data_dir, "-o", out, "--seconds", "0")
    assert zero.exit_code == 1
    assert "--seconds: Input should be greater than 0" in words(zero.stderr)
    unmade = generate_here(
        data_dir, "-o", out, "--seconds", "30", "--size", "127x64", "--fps", "23"
    )
    assert unmade.exit_code == 1
    said = words(unmade.stderr)
    assert "--size: 127x64 is not even; tiny-ltx2 makes even sizes" in said
    assert "--seconds: 30 s: tiny-ltx2 makes 1..20 s" in said
    assert "--fps: 23: tiny-ltx2 makes 24, 25, 30, 48, 50 frames per second" in said
    both = generate_here(data_dir, "-o", out, "--seconds", "2", "--duration", "3")
    assert both.exit_code == 1 and "--duration is its older name" in words(both.stderr)
    assert not data_dir.exists()


def test_image_files_are_read_and_verified_before_the_model_loads(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    out = str(tmp_path / "x.mp4")
    missing = generate_here(data_dir, "-o", out, "--image", str(tmp_path / "fox.png"))
    assert missing.exit_code == 1
    assert f"--image: no such file: {tmp_path / 'fox.png'}" in words(missing.stderr)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    not_image = generate_here(data_dir, "-o", out, "--last-image", str(text))
    assert not_image.exit_code == 1
    assert "--last-image: not an image: not a JPEG, PNG or WebP image" in words(not_image.stderr)
    folder = generate_here(data_dir, "-o", out, "--image", str(tmp_path))
    assert folder.exit_code == 1
    assert f"--image: {tmp_path} is a folder, not an image file" in words(folder.stderr)
    assert not data_dir.exists()


def test_a_local_image_url_on_a_refused_address_says_which_setting_allows_it(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    url = "https://127.0.0.1:9/fox.png"  # refused before any connection is tried
    result = generate_here(data_dir, "-o", str(tmp_path / "x.mp4"), "--image", url)
    assert result.exit_code == 1
    said = words(result.stderr)
    assert "--image: refused address: private, loopback and link-local destinations" in said
    assert "KINEMA_INPUT_ALLOW_PRIVATE=1 lets this machine fetch" in said
    assert not data_dir.exists()


def test_options_a_kling_id_would_ignore_are_refused_before_connecting(tmp_path: Path) -> None:
    """Against a server, no --model means the Kling text-to-video id, whose body has no size,
    rate or image: each is named, with what to do, before the (absent) server is tried."""
    image = tmp_path / "first.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")  # not read: the options are refused first
    server = ["--server", f"http://127.0.0.1:{free_port()}", "-o", str(tmp_path / "x.mp4")]
    sized = runner.invoke(app, ["generate", "a fox", *server, "--size", "128x64", "--fps", "24"])
    assert sized.exit_code == 1
    said = words(sized.stderr)
    kling = "klingai/video-v2-6-pro-text-to-video"
    assert f"--size: not taken by {kling}; --fps: not taken by {kling}" in said
    assert f"without --model the server is asked for {kling}, a hosted API id" in said
    assert "a kinema model id (`kinema models --server http://127.0.0.1:" in said
    assert "cannot connect" not in said
    with_image = runner.invoke(
        app, ["generate", "a fox", *server, "--image", str(image), "--seconds", "2"]
    )
    assert with_image.exit_code == 1  # with an image: the image-to-video id, 5 or 10 seconds
    said = words(with_image.stderr)
    assert "--seconds: must be 5 or 10" in said
    assert "asked for klingai/video-v2-6-pro-image-to-video" in said
    assert "cannot connect" not in with_image.stderr


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
    assert set(entries) == {*MODELS, *PRESET_ALIASES, *HOSTED_ALIASES}
    served = {model_id for model_id, entry in entries.items() if entry["served"]}
    assert served == {"tiny-ltx2", "tiny-ltx2:fast", *HOSTED_ALIASES}
    assert entries["ltx-2:quality"]["description"].startswith("LTX-2 quality")
    assert entries["ltx-2:fast"]["alias_of"] == "ltx-2"


def test_models_as_a_table_shows_the_presets_and_what_is_served() -> None:
    result = runner.invoke(app, ["models", "--model", "ltx-2:quality"])
    assert result.exit_code == 0, result.output
    cells = [
        [cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines()
    ]
    rows = {
        row[0]: dict(zip(["served", "serves as", "sound", "memory"], row[1:5], strict=True))
        for row in cells
        if len(row) == 6
    }
    assert rows["ltx-2:quality"]["served"] == "yes" and rows["ltx-2"]["served"] == ""
    assert rows["tiny-ltx2"]["served"] == "" and "tiny-ltx2:quality" in rows
    assert (rows["ltx-2"]["sound"], rows["ltx-2"]["memory"]) == ("yes", "69 GB")
    assert (rows["wan-2.2"]["sound"], rows["wan-2.2"]["memory"]) == ("no", "23 GB")
    assert "served: here" in result.stdout


def test_sound_on_a_video_only_model_is_refused_in_the_clis_terms(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    args = ["generate", "a fox", "--model", "tiny-wan-2.2", "--audio", "--data-dir", str(data_dir)]
    refused = runner.invoke(app, [*args, "-o", str(tmp_path / "x.mp4")])
    assert refused.exit_code == 1
    assert (
        "--audio/--no-audio: tiny-wan-2.2 makes video without sound; leave out --audio "
        "(or pass --no-audio)" in words(refused.stderr)
    )
    assert not data_dir.exists()


def test_loras_are_checked_by_flag_before_the_model_loads(tmp_path: Path) -> None:
    data_dir, out = tmp_path / "data", str(tmp_path / "x.mp4")
    bad_scale = generate_here(data_dir, "-o", out, "--lora", "glow:bright")
    assert bad_scale.exit_code == 1
    assert "--lora: 'glow:bright': SCALE must be a number, e.g. glow:0.8" in words(bad_scale.stderr)
    folder = tmp_path / "loras" / "tiny-ltx2"
    folder.mkdir(parents=True)
    (folder / "glow.safetensors").write_bytes(b"read by the worker, not here")
    env = {"KINEMA_LORA_DIR": str(tmp_path / "loras")}
    args = ["generate", "a fox", "--model", "tiny-ltx2", "--data-dir", str(data_dir), "-o", out]
    unknown = runner.invoke(app, [*args, "--lora", "grain:0.5"], env=env)
    assert unknown.exit_code == 1
    assert "error: --lora: no LoRA named 'grain' for tiny-ltx2; offered: glow" in words(
        unknown.stderr
    )
    too_many = generate_here(data_dir, "-o", out, *["--lora", "glow"] * 5)
    assert too_many.exit_code == 1 and "--lora:" in words(too_many.stderr)
    assert not data_dir.exists()
