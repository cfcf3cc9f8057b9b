"""`kinema worker --gpus 0,1,…`: one clip across several GPUs, rank 0 owning the job.

One process per device (torch.multiprocessing, spawn): NCCL between GPUs, gloo between CPU ranks
(tests). Each rank loads the whole pipeline on its device and splits the transformer's video
tokens with the others (`kinema.engine.parallel`). Rank 0 runs the normal `Worker` around a
`ParallelRunner`; the others follow it clip by clip.

This process, the launcher, serves the ranks' TCPStore, hands `stop` on to rank 0 and watches the
ranks. When one exits, the others get `grace_seconds` to follow, then are terminated. The exit code
tells a supervisor what happened: 0 after a requested stop, EXIT_MODEL_UNAVAILABLE when a rank
could not load the model (do not restart), 1 for any other failure (restart the whole group; a job
in flight goes back to the queue when its lease expires).
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kinema.config import Settings
from kinema.errors import ModelUnavailable
from kinema.wiring import served_models
from kinema.worker.supervisor import EXIT_MODEL_UNAVAILABLE

if TYPE_CHECKING:  # torch is imported only when the ranks start
    from kinema.engine.parallel import ContextParallel, ParallelRunner, RankGroup
    from kinema.engine.pipelines import ModelRunner

logger = logging.getLogger("kinema.parallel")

STORE_HOST = "127.0.0.1"
RankMain = Callable[["ParallelRunner", Settings, threading.Event], int]
# Builds one rank's engine and splits it: (settings, group, mode) -> (ModelRunner, ContextParallel).
RankLoader = Callable[[Settings, "RankGroup", str], tuple["ModelRunner", "ContextParallel | None"]]


@dataclass(frozen=True)
class RankSetup:
    """What every rank process gets (pickled to it)."""

    settings: Settings
    devices: tuple[str, ...]  # rank r runs on devices[r]
    store_port: int
    mode: str  # ulysses | ring
    main: RankMain  # rank 0's work once every rank has loaded the model
    load: RankLoader
    log_level: int
    visible_gpus: str | None  # CUDA_VISIBLE_DEVICES of the GPU ranks (rank r: cuda:r)


def run_parallel_worker(
    settings: Settings,
    gpus: Sequence[int] | None = None,
    stop: threading.Event | None = None,
    *,
    devices: Sequence[str] | None = None,
    mode: str = "ulysses",
    grace_seconds: float = 10.0,
) -> int:
    """Serve jobs with one clip across `gpus` (CUDA indices), or across `devices` as given (e.g.
    ["cpu", "cpu"]: two gloo ranks on the CPU, for tests). Returns an exit code."""
    chosen, visible = rank_devices(gpus, devices)
    return launch_ranks(
        settings, chosen, serve_jobs, stop, mode=mode, visible_gpus=visible, grace=grace_seconds
    )


def rank_devices(
    gpus: Sequence[int] | None, devices: Sequence[str] | None
) -> tuple[tuple[str, ...], str | None]:
    """(each rank's device, CUDA_VISIBLE_DEVICES for the ranks). GPU ranks see just the chosen
    GPUs, in order, so rank r is cuda:r (what torch.distributed and diffusers assume)."""
    if devices:
        return tuple(devices), None
    if not gpus:
        raise ValueError("name the GPUs (e.g. 0,1) or the devices of the ranks")
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"a GPU is named twice: {list(gpus)}")
    already = os.environ.get("CUDA_VISIBLE_DEVICES")
    if already:  # indices count within what this process may see
        seen = [part.strip() for part in already.split(",") if part.strip()]
        if max(gpus) >= len(seen):
            raise ValueError(f"GPU {max(gpus)} is not among CUDA_VISIBLE_DEVICES={already}")
        names = [seen[gpu] for gpu in gpus]
    else:
        names = [str(gpu) for gpu in gpus]
    return tuple(f"cuda:{rank}" for rank in range(len(gpus))), ",".join(names)


def launch_ranks(
    settings: Settings,
    devices: Sequence[str],
    main: RankMain,
    stop: threading.Event | None = None,
    *,
    mode: str = "ulysses",
    visible_gpus: str | None = None,
    grace: float = 10.0,
    load: RankLoader | None = None,
) -> int:
    """Start one process per device; each builds its engine with `load` (default: the served
    model's weights); rank 0 then runs `main`, the others follow it. Waits for them all.
    `main` and `load` are pickled to the ranks: module-level functions (or partials of them)."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    from kinema.engine.parallel import request_shutdown

    if len(devices) < 2:
        raise ValueError("one clip across ranks needs at least two devices")
    store = dist.TCPStore(
        STORE_HOST, 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60)
    )
    setup = RankSetup(
        settings=settings,
        devices=tuple(devices),
        store_port=store.port,
        mode=mode,
        main=main,
        load=load or load_served_model,
        log_level=logging.getLogger().getEffectiveLevel(),
        visible_gpus=visible_gpus,
    )
    logger.info("starting %d ranks on %s (%s)", len(devices), ", ".join(devices), mode)
    context = mp.start_processes(
        _rank_process, args=(setup,), nprocs=len(devices), join=False, start_method="spawn"
    )
    try:
        return _watch(context.processes, stop, lambda: request_shutdown(store), grace)
    finally:
        for process in context.processes:
            if process.exitcode is None:
                process.kill()
            process.join()


def _watch(
    processes: list[Any],
    stop: threading.Event | None,
    shutdown: Callable[[], None],
    grace: float,
) -> int:
    """Wait for the ranks; pass `stop` on; once one has exited, give the rest `grace` seconds."""
    first_exit: float | None = None
    stopping = False
    while True:
        if stop is not None and stop.is_set() and not stopping:
            stopping = True
            shutdown()
        codes = [process.exitcode for process in processes]
        if all(code is not None for code in codes):
            break
        if first_exit is None and any(code is not None for code in codes):
            first_exit = time.monotonic()
            if not stopping:
                stopping = True
                shutdown()
            if any(code not in (None, 0) for code in codes):
                logger.error("a rank exited with %s; stopping the others", codes)
        if first_exit is not None and time.monotonic() - first_exit > grace:
            logger.error("ranks still running %.0f s after another exited: terminating", grace)
            for process in processes:
                if process.exitcode is None:
                    process.terminate()
            for process in processes:
                process.join(5.0)
            break
        running = [process.sentinel for process in processes if process.exitcode is None]
        multiprocessing.connection.wait(running, timeout=0.2)
    return _exit_code([process.exitcode for process in processes])


def _exit_code(codes: list[int | None]) -> int:
    if EXIT_MODEL_UNAVAILABLE in codes:
        return EXIT_MODEL_UNAVAILABLE
    return 0 if all(code == 0 for code in codes) else 1


# -- inside a rank process ------------------------------------------------------------------------


def _rank_process(rank: int, setup: RankSetup) -> None:
    """The body of rank `rank`'s process: its exit code is what `_watch` sees."""
    if setup.visible_gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = setup.visible_gpus  # before CUDA starts
    logging.basicConfig(
        level=setup.log_level,
        format=f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s",
        force=True,
    )
    stop = threading.Event()
    # Ctrl-C reaches every process of the terminal's group, and the launcher's death reaches the
    # ranks as SIGINT too: rank 0 stops gracefully (the others follow it); the others ignore it.
    if rank == 0:
        signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = _run_rank(rank, setup, stop)
    except BaseException:
        logging.getLogger("kinema.parallel").exception("rank %d failed", rank)
        code = 1
    sys.exit(code)


def _run_rank(rank: int, setup: RankSetup, stop: threading.Event) -> int:
    import torch

    from kinema.engine.parallel import ControlChannel, init_ranks

    device = torch.device(setup.devices[rank])
    world_size = len(setup.devices)
    if device.type == "cpu":  # the ranks share the CPU cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    group = init_ranks(rank, world_size, device, STORE_HOST, setup.store_port)
    channel = ControlChannel(group)
    try:
        if rank == 0:
            return _lead(setup, group, channel, stop)
        return _follow(setup, group, channel)
    finally:
        group.close()


def load_served_model(
    settings: Settings, group: RankGroup, mode: str
) -> tuple[ModelRunner, ContextParallel | None]:
    """The default loader: the first served model, from its weights."""
    from kinema.catalog.registry import get_spec
    from kinema.engine.parallel import load_rank_engine

    return load_rank_engine(get_spec(served_models(settings)[0]), settings, group, mode)


def _load(setup: RankSetup, group: Any) -> tuple[Any, Any]:
    return setup.load(setup.settings, group, setup.mode)


def _lead(setup: RankSetup, group: Any, channel: Any, stop: threading.Event) -> int:
    from kinema.engine.parallel import ParallelRunner

    try:
        engine, parallel = _load(setup, group)
    except ModelUnavailable as exc:
        logger.error("cannot serve the model across %d ranks: %s", group.world_size, exc)
        channel.post("stop")
        return EXIT_MODEL_UNAVAILABLE
    threading.Thread(target=_bridge, args=(channel, stop), daemon=True).start()
    problem = channel.wait_ready(stop.is_set)
    leader = ParallelRunner(engine, group, channel, parallel, on_broken=stop.set)
    try:
        if problem:
            logger.error("not every rank is ready: %s", problem)
            return 0 if stop.is_set() else EXIT_MODEL_UNAVAILABLE
        code = setup.main(leader, setup.settings, stop)
        return 1 if leader.broken else code
    finally:
        leader.close()


def _follow(setup: RankSetup, group: Any, channel: Any) -> int:
    from kinema.engine.parallel import follow

    try:
        engine, _ = _load(setup, group)
    except ModelUnavailable as exc:
        logger.error("cannot load the model: %s", exc)
        channel.announce_ready(str(exc))
        return EXIT_MODEL_UNAVAILABLE
    channel.announce_ready(None)
    clips = follow(engine, group, channel)
    logger.info("rank %d made %d clips with rank 0; stopping", group.rank, clips)
    return 0


def _bridge(channel: Any, stop: threading.Event) -> None:
    """The launcher's shutdown (a key in the store) → this process's `stop`; the launcher gone
    (the store unreachable) counts as a shutdown."""
    while not stop.wait(0.2):
        try:
            requested = channel.shutdown_requested()
        except RuntimeError:
            requested = True
        if requested:
            stop.set()


def serve_jobs(engine: ParallelRunner, settings: Settings, stop: threading.Event) -> int:
    """Rank 0's work in `kinema worker --gpus`: the normal worker loop, with the engine that runs
    each clip on every rank (its warm-up compiles on every rank too)."""
    from kinema.worker.supervisor import serve_engine

    return serve_engine(engine, settings, stop)
