"""`kinema worker`: one worker process (or one clip's ranks across GPUs)."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from kinema.cli.app import DataDir, Model, StorageUrl, StoreUrl, app, configure_logging, fail
from kinema.config import Settings
from kinema.wiring import make_settings
from kinema.worker.supervisor import run_worker, stop_on_signals, stop_when_orphaned


@app.command()
def worker(
    model: Model = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    storage: StorageUrl = None,
    gpus: Annotated[
        str | None, typer.Option(help="one clip across these GPUs (context parallel), e.g. 0,1")
    ] = None,
    context_parallel: Annotated[str, typer.Option(help="ulysses | ring (CUDA only)")] = "ulysses",
    cpu_ranks: Annotated[int, typer.Option(hidden=True)] = 0,  # tests: N gloo ranks on a CPU
    log_level: str = "info",
    exit_with_parent: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run one worker: load the model once, then process jobs from the shared queue."""
    configure_logging(log_level)
    stop = threading.Event()
    stop_on_signals(stop)
    if exit_with_parent:
        stop_when_orphaned(stop)
    settings = make_settings(model=model, data_dir=data_dir, store_url=store, storage=storage)
    try:
        ids = [int(g) for g in gpus.split(",") if g.strip()] if gpus else None
    except ValueError:
        raise fail(f"--gpus takes GPU numbers like 0,1,2,3, not {gpus!r}") from None
    if ids and len(ids) == 1:
        settings = settings.model_copy(update={"device": f"cuda:{ids[0]}"})
    if (ids and len(ids) > 1) or cpu_ranks > 1:
        raise typer.Exit(_run_ranks(settings, ids, cpu_ranks, context_parallel, stop))
    raise typer.Exit(run_worker(settings, stop))


def _run_ranks(
    settings: Settings, gpus: list[int] | None, cpu_ranks: int, mode: str, stop: threading.Event
) -> int:
    from kinema.worker.multi_gpu import run_parallel_worker

    devices = ["cpu"] * cpu_ranks if cpu_ranks > 1 else None
    try:
        return run_parallel_worker(settings, gpus, stop, devices=devices, mode=mode)
    except ValueError as exc:  # e.g. a GPU named twice, or not visible
        raise fail(str(exc)) from None
