"""What a worker needs of a loaded model. The single-GPU `engine.pipelines.ModelRunner`, rank 0's
`engine.parallel.ParallelRunner` and the tests' runners implement it; the worker depends on this
interface alone, so it never imports torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kinema.catalog.plan import GenerationPlan
from kinema.catalog.registry import ModelSpec
from kinema.domain import Clip

StepCallback = Callable[[int, int], None]  # (steps_done, total_steps), after each denoising step


class ClipRunner(Protocol):
    @property
    def spec(self) -> ModelSpec:
        """The model (and preset) it runs."""
        ...

    @property
    def features(self) -> dict[str, str]:
        """What each speed feature resolved to, e.g. {"compile": "off", "lora": "fused"}."""
        ...

    @property
    def last_timings(self) -> dict[str, float]:
        """Seconds per stage of the last `generate` (text_encode, stage1, …), finished or not."""
        ...

    def generate(
        self, plan: GenerationPlan, on_step: StepCallback, is_canceled: Callable[[], bool]
    ) -> Clip:
        """Run `plan`; on cancel, stop at the next step and raise GenerationCanceled."""
        ...

    def warm_up(self, seconds: float = 1.0) -> None:
        """Run a short clip at the shape real jobs have (compiles what needs compiling)."""
        ...
