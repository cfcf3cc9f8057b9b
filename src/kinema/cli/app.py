"""The root `kinema` Typer app and what its command groups share: the console, the common
options, and errors told in the CLI's terms."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import httpx
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from kinema.catalog.registry import HOSTED_ALIASES, MODELS, PRESET_ALIASES
from kinema.errors import ClientError, FieldError, ValidationFailed

COMPLETION_HELP = (
    "Shell completion (bash, zsh, fish, PowerShell): run `kinema --install-completion` once and "
    "restart the shell, or `kinema --show-completion` to print the script. "
    "Commands, options and --model ids complete."
)
PIPED_WIDTH = 240

app = typer.Typer(
    help="kinema: self-hosted text-to-video with sound.",
    epilog=COMPLETION_HELP,
    no_args_is_help=True,
    add_completion=True,
)

console = Console(stderr=True)


def complete_model(incomplete: str) -> list[str]:
    """--model completion: every model id kinema knows, its presets and the Kling aliases."""
    known = [*MODELS, *PRESET_ALIASES, *HOSTED_ALIASES]
    return [model_id for model_id in known if model_id.startswith(incomplete)]


DataDir = Annotated[
    Path | None, typer.Option("--data-dir", envvar="KINEMA_DATA_DIR", help="jobs, keys, artifacts")
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model", help="served model id (env KINEMA_MODEL)", autocompletion=complete_model
    ),
]


def _server_url(url: str | None) -> str | None:
    """--server must be an http(s) URL (httpx's own complaint about `host:port` names no flag)."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    suggestion = "" if "://" in url else f"; did you mean http://{url} ?"
    raise typer.BadParameter(f"{url!r} is not an http:// or https:// URL{suggestion}")


def _writable_output(path: Path) -> Path:
    """-o is checked before anything is submitted: a clip rendered for a path that cannot be
    written is minutes of work lost at the very end."""
    if path.is_dir():
        example = path / "clip.mp4"
        raise typer.BadParameter(f"{path} is a directory; name the file to write, e.g. {example}")
    folder = path.parent
    if not folder.exists():
        raise typer.BadParameter(f"the folder {folder} does not exist (create it first)")
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder")
    writable = os.access(path, os.W_OK) if path.exists() else os.access(folder, os.W_OK)
    if not writable:
        raise typer.BadParameter(f"{path} cannot be written here (permission denied)")
    return path


Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="KINEMA_SERVER",
        help="server URL, e.g. http://127.0.0.1:8000; without it: this machine",
        callback=_server_url,
    ),
]
Output = Annotated[
    Path, typer.Option("--output", "-o", help="mp4 file to write", callback=_writable_output)
]


def _writable_output_if_given(path: Path | None) -> Path | None:
    return None if path is None else _writable_output(path)


OptionalOutput = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="mp4 file to write", callback=_writable_output_if_given),
]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="KINEMA_API_KEY", help="the server's API key")
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON on stdout, for scripts")]
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store", help="jobs database URL (env KINEMA_STORE_URL; default: SQLite in the data dir)"
    ),
]
StorageUrl = Annotated[
    str | None,
    typer.Option("--storage", help="artifacts: s3://bucket/prefix (env KINEMA_STORAGE)"),
]


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )


def fail(message: str, then: str | None = None) -> typer.Exit:
    """Print the error (and `then`, what to do next) on stderr; raise the result (exit 1)."""
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    if then:
        console.print(escape(then), highlight=False)
    return typer.Exit(1)


# -- errors in the CLI's terms -----------------------------------------------------------------

# The create body's fields (and the plan's, and /v1/videos' params), as the commands spell them.
CLI_FLAGS = {
    "model": "--model",
    "prompt": "PROMPT",
    "aspect_ratio": "--aspect-ratio",
    "duration": "--seconds",
    "seconds": "--seconds",
    "size": "--size",
    "width": "--size",
    "height": "--size",
    "fps": "--fps",
    "image_url": "--image",
    "tail_image_url": "--last-image",
    "input_reference": "--image",
    "negative_prompt": "--negative-prompt",
    "cfg_scale": "--cfg-scale",
    "generate_audio": "--audio/--no-audio",
    "seed": "--seed",
    "loras": "--lora",
    "after": "--after",
    "video": "ID",
}
# Where the contract's message speaks of the wire (a JSON string "5" is fine there).
CLI_MESSAGES = {'must be 5 or 10 (or the strings "5" / "10")': "must be 5 or 10"}
# Endings of the contract's messages that tell a client what to send, as the command says it.
CLI_ADVICE = {"; send false": "; leave out --audio (or pass --no-audio)"}
PASS_A_KEY = "pass --api-key KEY or set KINEMA_API_KEY"


def _in_cli_terms(errors: list[FieldError]) -> str:
    return "; ".join(
        f"{CLI_FLAGS.get(e.field, e.field)}: {_cli_message(e.message)}" for e in errors
    )


def _cli_message(message: str) -> str:
    message = CLI_MESSAGES.get(message, message)
    for wire, cli in CLI_ADVICE.items():
        if message.endswith(wire):
            return message.removesuffix(wire) + cli
    return message


def explained(exc: Exception, server: str | None = None, api_key: str | None = None) -> str:
    """An error as the person at the command line can act on it: flags and settings, the URL
    that failed, not the wire contract's field names and headers."""
    if isinstance(exc, ValidationFailed) and exc.errors:
        return _in_cli_terms(exc.errors)
    if isinstance(exc, ClientError):
        return _server_refusal(exc, server, api_key)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return (
            f"cannot connect to the server at {server} ({exc}); is `kinema serve` running "
            "there? (the URL comes from --server or KINEMA_SERVER)"
        )
    if isinstance(exc, httpx.HTTPError):
        return f"the connection to {server} failed: {exc or type(exc).__name__}"
    return str(exc)


def _server_refusal(exc: ClientError, server: str | None, api_key: str | None) -> str:
    if exc.status_code == 401:
        if api_key is None:
            return f"the server at {server} needs an API key: {PASS_A_KEY}"
        return (
            f"the server at {server} does not accept this API key (from --api-key or "
            "KINEMA_API_KEY); `kinema keys list` on the server's machine shows its keys"
        )
    errors = _body_field_errors(exc.body)
    if not errors:
        return str(exc)
    served = f"; `kinema models --server {server}` lists them"
    return _in_cli_terms(errors) + (served if any(e.field == "model" for e in errors) else "")


def _body_field_errors(body: object) -> list[FieldError]:
    """The invalid fields a refusal names: the hosted API's envelope lists them
    (`errors[{field, message}]`), OpenAI's names one (`error{param, message}`)."""
    if not isinstance(body, dict):
        return []
    raw = body.get("errors")
    if isinstance(raw, list):
        return [
            FieldError(str(error.get("field")), str(error.get("message")))
            for error in raw
            if isinstance(error, dict)
        ]
    return _openai_param_error(body.get("error"))


def _openai_param_error(error: object) -> list[FieldError]:
    if not isinstance(error, dict) or not isinstance(error.get("param"), str):
        return []
    param, message = error["param"], str(error.get("message"))
    return [FieldError(param, message.removeprefix(f"Invalid '{param}': "))]


def stdout_console() -> Console:
    """Tables for people on stdout; piped, they keep whole lines instead of an 80-column cut."""
    plain = Console()
    return plain if plain.is_terminal else Console(width=PIPED_WIDTH)


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2))
