"""`kinema serve`: the HTTP API and its worker processes, listening once the port is bound."""

from __future__ import annotations

import errno
import gc
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kinema.cli.app import (
    DataDir,
    Model,
    StorageUrl,
    StoreUrl,
    app,
    configure_logging,
    console,
    fail,
)
from kinema.config import Settings
from kinema.domain import ApiKey
from kinema.errors import KinemaError
from kinema.service import KeyService
from kinema.wiring import make_settings
from kinema.worker.supervisor import EXIT_MODEL_UNAVAILABLE, WorkerSupervisor

if TYPE_CHECKING:
    import uvicorn

# Idle keep-alive connections stay open this long: longer than the idle timeout of the usual load
# balancers and client pools (60 s), so a client never reuses a connection the server just closed.
KEEP_ALIVE_SECONDS = 75


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind")] = None,
    model: Model = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    storage: StorageUrl = None,
    workers: Annotated[
        int, typer.Option(help="worker processes per served model, beside the API")
    ] = 1,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="run the API only")] = False,
    log_level: str = "info",
) -> None:
    """Run the HTTP API and its worker process(es): --model ltx-2,wan-2.2 serves both, each
    model's jobs made by its own workers."""
    import uvicorn

    from kinema.server import create_app

    configure_logging(log_level)
    settings = make_settings(
        host=host, port=port, model=model, data_dir=data_dir, store_url=store, storage=storage
    )
    # The port first: a server that cannot listen must not create (and print) a key.
    listener = _listening_socket(settings.host, settings.port)
    server: uvicorn.Server | None = None

    def shut_down() -> None:
        if server is not None:
            server.should_exit = True

    supervisor = WorkerSupervisor(
        settings, 0 if no_worker else workers, on_fatal=shut_down, log_level=log_level
    )
    try:
        api = create_app(settings, supervisor)
    except KinemaError as exc:
        listener.close()
        raise fail(str(exc)) from None
    new_key = _announce_keys(api.state.services.keys, settings.api_keys)
    ready = ReadyNotice(_base_url(settings, listener), settings.model, new_key)
    config = uvicorn.Config(api, log_level=log_level, timeout_keep_alive=KEEP_ALIVE_SECONDS)
    server = _announcing_server(config, ready)
    # What exists now lives as long as the server: a full collection then walks none of it, which
    # otherwise stalls every request (health checks too) for about 0.1 s each time it runs.
    gc.collect()
    gc.freeze()
    try:
        server.run(sockets=[listener])
    finally:
        if new_key is not None and not ready.shown:  # it stopped before it could announce
            console.print(f"created API key {new_key.key.id} (shown only this once): {new_key.raw}")
    if supervisor.fatal:
        console.print("[red]error:[/red] the worker could not load the model (see above)")
        raise typer.Exit(EXIT_MODEL_UNAVAILABLE)


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        hint = "; is another server running there? choose a free one with --port"
        busy = exc.errno == errno.EADDRINUSE
        raise fail(
            f"cannot listen on {host}:{port}: {exc.strerror}{hint if busy else ''}"
        ) from None
    return listener


def _base_url(settings: Settings, listener: socket.socket) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host, port = listener.getsockname()[:2]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # every interface: this one too
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    raw: str


@dataclass
class ReadyNotice:
    """What `serve` prints once it answers: where the API and the playground are, and the key
    it created (if it had to)."""

    url: str
    model: str
    new_key: NewKey | None
    shown: bool = False

    def show(self) -> None:
        console.print(self._render())
        self.shown = True

    def _render(self) -> Panel:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_row("API", self.url)
        grid.add_row("playground", f"{self.url}/")
        grid.add_row("models" if "," in self.model else "model", self.model.replace(",", ", "))
        if self.new_key is None:
            grid.add_row("API keys", "kinema keys list; a new one: kinema keys create --name NAME")
        else:
            grid.add_row("API key", Text(self.new_key.raw, style="bold green"))
            grid.add_row("", "created because none existed; shown only this once")
            grid.add_row("", f"its webhook secret: kinema keys secret {self.new_key.key.id}")
        return Panel(grid, title="kinema is serving", title_align="left", expand=False)


def _announcing_server(config: uvicorn.Config, ready: ReadyNotice) -> uvicorn.Server:
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        """Prints the ready notice once the app has started and the socket accepts requests."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                ready.show()

    return AnnouncingServer(config)


def _announce_keys(keys: KeyService, seeded: str) -> NewKey | None:
    """Seed the deployment's keys; if none is usable then, create one (to be shown once)."""
    keys.seed(k.strip() for k in seeded.split(","))
    raw_key = keys.ensure_one()
    return None if raw_key is None else NewKey(keys.authenticate(raw_key), raw_key)
