"""A test `ClipRunner`: a real runner with a hook that runs at one denoising step."""

from __future__ import annotations

from collections.abc import Callable

from kinema.catalog.plan import GenerationPlan
from kinema.catalog.registry import ModelSpec
from kinema.catalog.runner import ClipRunner, StepCallback
from kinema.domain import Clip


class HookedRunner:
    def __init__(self, runner: ClipRunner, at_step: int, hook: Callable[[], None]) -> None:
        self.runner = runner
        self.at_step = at_step
        self.hook = hook
        self.steps: list[tuple[int, int]] = []  # (done, total) of each step seen

    @property
    def spec(self) -> ModelSpec:
        return self.runner.spec

    @property
    def features(self) -> dict[str, str]:
        return self.runner.features

    @property
    def last_timings(self) -> dict[str, float]:
        return self.runner.last_timings

    def warm_up(self, seconds: float = 1.0) -> None:
        self.runner.warm_up(seconds)

    def generate(
        self, plan: GenerationPlan, on_step: StepCallback, is_canceled: Callable[[], bool]
    ) -> Clip:
        def step(done: int, total: int) -> None:
            self.steps.append((done, total))
            if done == self.at_step:
                self.hook()
            on_step(done, total)

        return self.runner.generate(plan, step, is_canceled)
