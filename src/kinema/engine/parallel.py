"""One clip across several devices: context parallelism plus the rank protocol around it.

Every rank holds the whole pipeline on its own device. Inside the LTX-2 transformer the video token
sequence is split across the ranks (diffusers' context parallelism: Ulysses all-to-all by default,
ring attention on CUDA), so each step's attention and MLP work is shared, while the latents between
steps stay whole and identical on every rank.

The rank protocol. Rank 0 owns the job: it runs the normal `kinema.worker.runner.Worker` around a
`ParallelRunner` (claims, leases, progress, encode and storage happen there only). For each clip
it posts the `GenerationPlan` on the control channel, then every rank calls
`ModelRunner.generate` on it: same plan, same seed, so the same noise. Each time the runner asks
"canceled?" (before the clip, at every denoising step, after every stage) the ranks answer
together: rank 0 decides, a broadcast
tells the others, so all of them stop at the same step. A "stop" message ends the followers' loop.

The control channel is the distributed store (TCPStore), polled by the followers, not a
collective: an idle follower waiting hours for the next job must not sit inside a collective
(NCCL's watchdog aborts a process whose collective waits longer than its timeout). Only the work
of one clip runs as collectives.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import torch
import torch.distributed as dist

from kinema.catalog.plan import GenerationPlan
from kinema.catalog.registry import ModelSpec
from kinema.config import Settings
from kinema.domain import Clip
from kinema.engine import speed
from kinema.engine.pipelines import ModelRunner, StepCallback, load_engine
from kinema.errors import GenerationCanceled, ModelUnavailable

__all__ = [
    "MODES",
    "ContextParallel",
    "ControlChannel",
    "ParallelRunner",
    "RankGroup",
    "StopAgreement",
    "enable_context_parallel",
    "follow",
    "init_ranks",
    "load_rank_engine",
    "parallelize",
    "rank_settings",
    "request_shutdown",
]

logger = logging.getLogger("kinema.engine.parallel")

MODES = ("ulysses", "ring")
# Backends that can run the LTX-2 transformer under context parallelism: its text cross-attention
# carries a mask, which rules out the flash kernels; ring attention needs the log-sum-exp, which
# diffusers' "native" (SDPA) backend does not return.
ULYSSES_BACKENDS = ("native", "_native_cudnn")
RING_BACKEND = "_native_cudnn"
POLL_SECONDS = 0.02  # how often an idle follower looks for rank 0's next message
COLLECTIVE_TIMEOUT = timedelta(minutes=10)  # one collective of a clip, not an idle wait


# -- ranks ----------------------------------------------------------------------------------------


@dataclass
class RankGroup:
    """This process's place among the ranks that make one clip together."""

    rank: int
    world_size: int
    device: torch.device
    store: dist.Store  # shared by all ranks (the control channel lives here)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def init_ranks(
    rank: int,
    world_size: int,
    device: torch.device | str,
    store_host: str,
    store_port: int,
    timeout: timedelta = COLLECTIVE_TIMEOUT,
) -> RankGroup:
    """Join the process group (NCCL on CUDA, gloo on a CPU) through the TCPStore that whoever
    started the ranks serves at `store_host:store_port` (all ranks are its clients)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    store = dist.TCPStore(store_host, store_port, is_master=False, timeout=timedelta(seconds=60))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        store=dist.PrefixStore("pg/", store),
        rank=rank,
        world_size=world_size,
        timeout=timeout,
    )
    logger.info("rank %d of %d on %s (%s)", rank, world_size, device, backend)
    return RankGroup(rank, world_size, device, store)


def _control(store: dist.Store) -> dist.Store:
    return dist.PrefixStore("kinema/", store)


def _put(store: dist.Store, key: str, value: bytes) -> None:
    store.set(key, value)  # type: ignore[arg-type]  # torch's stub says str; the binding takes bytes


def request_shutdown(store: dist.Store) -> None:
    """The launcher's stop, for rank 0 (it ends its worker, then tells the others)."""
    _put(_control(store), "shutdown", b"1")


class ControlChannel:
    """Rank 0 → followers: numbered messages ("generate", plan) / ("stop", None) in the store.
    Followers → rank 0: whether they loaded the model, each clip's outcome, goodbye. Launcher →
    rank 0: shutdown."""

    def __init__(self, group: RankGroup) -> None:
        self.group = group
        self._store = _control(group.store)
        self._sent = 0
        self._received = 0

    def shutdown_requested(self) -> bool:
        return bool(self._store.check(["shutdown"]))

    # rank 0
    def post(self, kind: str, payload: Any = None) -> None:
        self._sent += 1
        _put(self._store, f"msg/{self._sent}", pickle.dumps((kind, payload)))
        if self._sent > 1:  # every follower read it before it joined that clip's collectives
            self._store.delete_key(f"msg/{self._sent - 1}")

    @property
    def sent(self) -> int:
        return self._sent

    def wait_ready(self, should_stop: Callable[[], bool]) -> str | None:
        """Wait until every follower has loaded its model; the first problem any reported, or
        None. Returns early ("stopped") if `should_stop()`."""
        keys = [f"ready/{rank}" for rank in range(1, self.group.world_size)]
        while not self._store.check(keys):
            if should_stop():
                return "stopped before every rank had loaded the model"
            time.sleep(POLL_SECONDS * 5)
        problems = [pickle.loads(self._store.get(key)) for key in keys]
        return next((problem for problem in problems if problem), None)

    def outcomes(self, timeout: float = 30.0) -> dict[int, tuple[str, int]]:
        """Each follower's (outcome, steps) for the last clip posted: "done" or "canceled"."""
        deadline = time.monotonic() + timeout
        found: dict[int, tuple[str, int]] = {}
        while len(found) < self.group.world_size - 1:
            for rank in range(1, self.group.world_size):
                key = f"outcome/{rank}"
                if rank not in found and self._store.check([key]):
                    seq, outcome = pickle.loads(self._store.get(key))
                    if seq == self._sent:
                        found[rank] = outcome
            if len(found) < self.group.world_size - 1:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"followers reported {found} for message {self._sent}")
                time.sleep(POLL_SECONDS)
        return found

    def wait_goodbyes(self, timeout: float) -> bool:
        keys = [f"bye/{rank}" for rank in range(1, self.group.world_size)]
        deadline = time.monotonic() + timeout
        while not self._store.check(keys):
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    # followers
    def announce_ready(self, problem: str | None = None) -> None:
        _put(self._store, f"ready/{self.group.rank}", pickle.dumps(problem))

    def receive(self) -> tuple[str, Any]:
        key = f"msg/{self._received + 1}"
        while not self._store.check([key]):  # raises once the store (the launcher) is gone
            time.sleep(POLL_SECONDS)
        self._received += 1
        kind, payload = pickle.loads(self._store.get(key))
        return kind, payload

    def report(self, outcome: str, steps: int) -> None:
        _put(
            self._store,
            f"outcome/{self.group.rank}",
            pickle.dumps((self._received, (outcome, steps))),
        )

    def goodbye(self) -> None:
        _put(self._store, f"bye/{self.group.rank}", b"1")


class StopAgreement:
    """An `is_canceled` that every rank calls at the same points: each call is one broadcast of
    rank 0's answer (`ask`, which followers do not have), so all ranks stop at the same step."""

    def __init__(self, group: RankGroup, ask: Callable[[], bool] | None = None) -> None:
        self.group = group
        self.ask = ask
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        stop = bool(self.ask()) if self.ask is not None else False
        flag = torch.tensor([int(stop)], dtype=torch.int32, device=self.group.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())


# -- context parallelism --------------------------------------------------------------------------


class ContextParallel:
    """diffusers' context parallelism on an LTX-2 transformer, with the plan kinema needs.

    diffusers 0.42.1 ships a `_cp_plan` for `LTX2VideoTransformer3DModel` that cannot run LTX-2:
    it splits the RoPE tables as 3-D (interleaved) ones, while LTX-2 uses 4-D "split" RoPE; it
    leaves the audio-to-video cross-attention RoPE (`cross_attn_rope`) whole while its queries are
    split; and it splits the prompt, whose per-head mask (B, heads, 1, L) Ulysses then all-gathers
    with the head count of the unsplit heads.

    Here only the video tokens are split: `hidden_states` on entry, the outputs of `rope` and
    `cross_attn_rope`, gathered again after `proj_out`. Audio and prompt tokens stay whole on every
    rank (a few hundred tokens against tens of thousands), and attention masks, identical across
    heads, go to the attention as one head.

    A forward whose video token count does not divide by the world size (e.g. a 10 s 1:1 clip's
    first stage on two GPUs) runs unsplit on every rank, same result, no speed-up: the switch is
    decided per forward from the input's shape, which is the same on every rank.
    """

    def __init__(self, transformer: Any, device: torch.device, world_size: int, mode: str) -> None:
        if mode not in MODES:
            raise ModelUnavailable(f"context parallel mode {mode!r} is not one of: {MODES}")
        self.transformer = transformer
        self.device = device
        self.world_size = world_size
        self.mode = mode
        self.active = False
        self.split_forwards = 0
        self.whole_forwards = 0
        self._config: Any = None
        self._processors: list[Any] = []

    def describe(self) -> str:
        return f"{self.mode} x{self.world_size}"

    def enable(self) -> None:
        # Not `from diffusers import`: type checkers read diffusers' dummy class there.
        from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig
        from torch.distributed.device_mesh import init_device_mesh

        config = ContextParallelConfig(
            ring_degree=self.world_size if self.mode == "ring" else None,
            ulysses_degree=self.world_size if self.mode == "ulysses" else None,
        )
        config.mesh = init_device_mesh(
            self.device.type, config.mesh_shape, mesh_dim_names=config.mesh_dim_names
        )
        transformer = self.transformer

        def resolve(requested: Any) -> Any:
            # diffusers' own resolver derives the device from the accelerator count, which is 0
            # on a CPU (gloo ranks): record this rank's actual device instead.
            resolved = ParallelConfig(context_parallel_config=requested)
            resolved.setup(dist.get_rank(), self.world_size, self.device, mesh=config.mesh)
            transformer._parallel_config = resolved
            return resolved

        transformer._resolve_parallel_config = resolve
        try:
            # Validates the attention backend and hands the config to every attention processor;
            # the hooks that split and gather are kinema's own (an empty diffusers plan).
            transformer.enable_parallelism(config=config, cp_plan={})
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(f"cannot enable context parallelism: {exc}") from exc
        finally:
            del transformer._resolve_parallel_config
        self._config = transformer._parallel_config
        self._processors = [
            processor
            for module in transformer.modules()
            if (processor := getattr(module, "processor", None)) is not None
            and getattr(processor, "_parallel_config", None) is self._config
        ]
        self._register_hooks(config)
        _share_head_masks()
        self.active = True

    def set_active(self, active: bool) -> None:
        if active == self.active:
            return
        for processor in self._processors:
            processor._parallel_config = self._config if active else None
        self.active = active

    def decide(self, video_tokens: int) -> bool:
        split = video_tokens % self.world_size == 0
        if split:
            self.split_forwards += 1
        else:
            self.whole_forwards += 1
        self.set_active(split)
        return split

    def _register_hooks(self, config: Any) -> None:
        from diffusers.hooks import HookRegistry
        from diffusers.hooks.context_parallel import (
            ContextParallelGatherHook,
            ContextParallelSplitHook,
            ModuleForwardMetadata,
        )
        from diffusers.models._modeling_parallel import (
            ContextParallelInput,
            ContextParallelOutput,
        )

        switch = self

        class Split(ContextParallelSplitHook):
            def __init__(self, metadata: Any, decides: bool = False) -> None:
                super().__init__(metadata, config)
                self.decides = decides

            def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
                if self.decides:
                    # initialize_hook set it; diffusers' __init__ types it as None.
                    forward = cast(ModuleForwardMetadata, self.module_forward_metadata)
                    hidden, _, _ = forward._get_parameter_from_args_kwargs(
                        "hidden_states", list(args), kwargs
                    )
                    switch.decide(int(hidden.shape[1]))
                return (
                    super().pre_forward(module, *args, **kwargs)
                    if switch.active
                    else (args, kwargs)
                )

            def post_forward(self, module: Any, output: Any) -> Any:
                if self.decides or not switch.active:  # the root splits inputs only
                    return output
                return super().post_forward(module, output)

        class Gather(ContextParallelGatherHook):
            def __init__(self, metadata: Any) -> None:
                super().__init__(metadata, config)

            def post_forward(self, module: Any, output: Any) -> Any:
                return super().post_forward(module, output) if switch.active else output

        transformer = self.transformer
        if transformer.config.rope_type == "split":  # (B, heads, tokens, dim / 2)
            rope_part = ContextParallelInput(split_dim=2, expected_dims=4, split_output=True)
        else:  # interleaved: (B, tokens, dim)
            rope_part = ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)
        rope = {0: rope_part, 1: rope_part}
        hooks = {
            "": Split(
                {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3)}, decides=True
            ),
            "rope": Split(rope),
            "cross_attn_rope": Split(rope),
            "proj_out": Gather([ContextParallelOutput(gather_dim=1, expected_dims=3)]),
        }
        for name, hook in hooks.items():
            module = transformer.get_submodule(name) if name else transformer
            registry = HookRegistry.check_if_exists_or_initialize(module)
            registry.register_hook(hook, f"kinema_context_parallel:{name or 'root'}")


def _share_head_masks() -> None:
    """LTX-2's attention processors repeat a mask for every head, (B, heads, 1, L); diffusers'
    Ulysses all-gathers it as it is, while its attention then runs heads / world_size heads. The
    heads' masks are equal: pass one head, which broadcasts over any head count."""
    from diffusers.models.transformers import transformer_ltx2 as module

    dispatch = module.dispatch_attention_fn
    if getattr(dispatch, "kinema_shared_mask", False):
        return

    def shared_mask_dispatch(
        query: Any, key: Any, value: Any, attn_mask: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        parallel = kwargs.get("parallel_config") is not None
        if parallel and attn_mask is not None and attn_mask.ndim == 4 and attn_mask.shape[1] > 1:
            attn_mask = attn_mask[:, :1]
        return dispatch(query, key, value, attn_mask, *args, **kwargs)

    shared_mask_dispatch.__dict__["kinema_shared_mask"] = True  # a function attribute
    module.dispatch_attention_fn = shared_mask_dispatch


def _attention_heads(transformer: Any) -> set[int]:
    return {
        int(module.heads)
        for module in transformer.modules()
        if hasattr(module, "heads")
        and hasattr(getattr(module, "processor", None), "_parallel_config")
    }


def enable_context_parallel(
    engine: ModelRunner, world_size: int, mode: str = "ulysses"
) -> ContextParallel:
    """Split `engine`'s transformer across the `world_size` ranks of the initialized process
    group. Ulysses needs every attention's head count to divide by `world_size`; ring attention
    needs CUDA (cuDNN attention). The attention backend is switched to one that supports it."""
    if not dist.is_initialized() or dist.get_world_size() != world_size:
        raise ModelUnavailable(
            f"context parallelism over {world_size} ranks needs their process group"
        )
    transformer = engine.pipeline.transformer
    if engine.features.get("step_cache") == "first_block":
        raise ModelUnavailable(
            "KINEMA_STEP_CACHE=first_block cannot run across ranks: each rank would judge its own "
            "part of the tokens and they could skip different steps; use taylorseer or none"
        )
    current = engine.features.get("attention", "native")
    if mode == "ring":
        if engine.device.type != "cuda":
            raise ModelUnavailable(
                "ring attention needs CUDA (cuDNN attention returns the log-sum-exp it merges); "
                "on a CPU use ulysses"
            )
        wanted = RING_BACKEND
    elif mode == "ulysses":
        bad = sorted(heads for heads in _attention_heads(transformer) if heads % world_size)
        if bad:
            raise ModelUnavailable(
                f"Ulysses context parallelism splits attention heads: {bad} heads do not divide "
                f"by {world_size} ranks; use ring attention or another GPU count"
            )
        wanted = current if current in ULYSSES_BACKENDS else "native"
    else:
        raise ModelUnavailable(f"context parallel mode {mode!r} is not one of: {MODES}")
    if wanted != current:
        logger.info("context parallel: attention %s -> %s (%s supports it)", current, wanted, mode)
        transformer.set_attention_backend(wanted)
        engine.features["attention"] = wanted
    parallel = ContextParallel(transformer, engine.device, world_size, mode)
    parallel.enable()
    engine.features["context_parallel"] = parallel.describe()
    logger.info(
        "speed: context_parallel = %s (video tokens split across ranks)", parallel.describe()
    )
    return parallel


def rank_settings(settings: Settings, device: torch.device) -> Settings:
    """The settings to build a rank's engine with: its own device, compile left for
    `parallelize` (it compiles after the split)."""
    return settings.model_copy(update={"device": str(device), "compile": "off"})


def parallelize(
    engine: ModelRunner, settings: Settings, world_size: int, mode: str = "ulysses"
) -> ContextParallel | None:
    """Split an engine built with `rank_settings` across the ranks, then compile its transformer
    blocks as `settings` asks, piecewise (`fullgraph=False`): Ulysses gathers attention masks with
    a collective that breaks the block graph."""
    parallel = enable_context_parallel(engine, world_size, mode) if world_size > 1 else None
    if speed.decide_compile(settings.compile, speed.probe(engine.device)):
        engine.features["compile"] = speed.apply_compile(
            engine.pipeline.transformer, True, settings.compile_cache_dir, fullgraph=False
        )
    return parallel


def load_rank_engine(
    spec: ModelSpec, settings: Settings, group: RankGroup, mode: str = "ulysses"
) -> tuple[ModelRunner, ContextParallel | None]:
    """This rank's engine: `spec`'s weights on the rank's device, split across the ranks."""
    engine = load_engine(spec, rank_settings(settings, group.device))
    return engine, parallelize(engine, settings, group.world_size, mode)


# -- the protocol ---------------------------------------------------------------------------------


def _no_progress(done: int, total: int) -> None:
    return None


class _StepCount:
    def __init__(self) -> None:
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        self.done = done


class ParallelRunner:
    """Rank 0's `ClipRunner` for `kinema.worker.runner.Worker`: every clip runs on all ranks in
    lockstep; only rank 0 reports progress and returns the clip.

    A failure other than a cancel leaves the ranks out of step (some may wait in a collective):
    the runner is then `broken`, calls `on_broken` (the rank's stop) and refuses further clips;
    whoever started the ranks starts them all again."""

    def __init__(
        self,
        engine: ModelRunner,
        group: RankGroup,
        channel: ControlChannel | None = None,
        parallel: ContextParallel | None = None,
        on_broken: Callable[[], None] | None = None,
    ) -> None:
        if not group.leader:
            raise ValueError("only rank 0 runs a ParallelRunner; the others `follow`")
        self.engine = engine
        self.spec = engine.spec
        self.group = group
        self.channel = channel or ControlChannel(group)
        self.parallel = parallel
        self.on_broken = on_broken
        self.broken = False
        self.last_agreement: StopAgreement | None = None

    @property
    def features(self) -> dict[str, str]:
        return self.engine.features

    @property
    def last_timings(self) -> dict[str, float]:
        return self.engine.last_timings

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def generate(
        self, plan: GenerationPlan, on_step: StepCallback, is_canceled: Callable[[], bool]
    ) -> Clip:
        if self.broken:
            raise RuntimeError("the ranks fell out of step after an earlier failure; restarting")
        self.channel.post("generate", plan)
        agreement = self.last_agreement = StopAgreement(self.group, is_canceled)
        try:
            return self.engine.generate(plan, on_step, agreement)
        except GenerationCanceled:
            raise
        except BaseException:
            self.broken = True
            if self.on_broken is not None:
                self.on_broken()
            raise

    def warm_up(self, seconds: float = 1.0) -> None:
        self.generate(self.engine.warm_up_plan(seconds), _no_progress, lambda: False)
        logger.info("warm-up clip done on %d ranks: %s", self.group.world_size, self.last_timings)

    def close(self, timeout: float = 30.0) -> None:
        """Tell the followers to stop; wait (up to `timeout`) until they have said goodbye."""
        try:
            self.channel.post("stop")
            if not self.channel.wait_goodbyes(2.0 if self.broken else timeout):
                logger.warning("not every follower rank said goodbye")
        except dist.DistError as exc:  # the launcher (the store) is gone
            logger.warning("cannot tell the follower ranks to stop: %s", exc)


def follow(engine: ModelRunner, group: RankGroup, channel: ControlChannel | None = None) -> int:
    """A follower's life: run every clip rank 0 posts, in step with it, until "stop". Returns
    the number of clips. A failure other than a cancel propagates: the rank must exit."""
    if group.leader:
        raise ValueError("rank 0 leads; it does not follow")
    channel = channel or ControlChannel(group)
    clips = 0
    while True:
        kind, plan = channel.receive()
        if kind == "stop":
            channel.goodbye()
            return clips
        if kind != "generate":
            raise RuntimeError(f"unknown message from rank 0: {kind!r}")
        steps = _StepCount()
        try:
            engine.generate(plan, steps, StopAgreement(group))
            outcome = "done"
        except GenerationCanceled:
            outcome = "canceled"
        clips += 1
        channel.report(outcome, steps.done)
