"""LoRAs per request on the tiny models: a LoRA acts at its scale, the base weights come back
after it, loaded LoRAs are kept (the least recently used unloaded first), and the job's meta says
which ran."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinema.catalog.plan import plan_generation
from kinema.catalog.registry import TINY_LTX2
from kinema.config import Settings
from kinema.domain import ApiKey, GenerationRequest, JobStatus, LoraChoice
from kinema.engine.pipelines import ModelRunner, load_engine
from kinema.wiring import build_services
from kinema.worker.runner import Worker

OWNER = ApiKey(id="owner", name="owner", created_at=0.0)


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path, lora_dir: Path
) -> ModelRunner:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"),
        tiny_weights=str(tiny_weights),
        lora_dir=lora_dir,
        loras_kept=1,
    )
    return load_engine(TINY_LTX2, settings)


def frames(engine: ModelRunner, *loras: LoraChoice) -> np.ndarray:
    request = GenerationRequest(model=engine.spec.id, prompt="a fox", duration=1, loras=loras)
    plan = plan_generation(request, engine.spec, seed=3)
    return engine.generate(plan, lambda done, total: None, lambda: False).frames.astype(int)


# -- on the tiny model ---------------------------------------------------------------------------


def test_a_lora_acts_at_its_scale_and_the_base_weights_come_back(engine: ModelRunner) -> None:
    base = frames(engine)
    glow = frames(engine, LoraChoice("glow"))
    assert np.abs(glow - base).mean() > 0.1
    assert np.array_equal(frames(engine), base)  # the next job runs the model's own weights
    assert np.array_equal(frames(engine, LoraChoice("glow", 0.0)), base)
    both = frames(engine, LoraChoice("glow"), LoraChoice("grain", 0.5))
    assert not np.array_equal(both, glow)


def test_loras_are_kept_loaded_and_the_least_recent_unloaded(engine: ModelRunner) -> None:
    """loras_kept=1 here: one stays loaded between jobs; a job's own LoRAs are never unloaded."""
    glow = frames(engine, LoraChoice("glow"))
    assert engine.request_loras.loaded == ["glow"]
    frames(engine, LoraChoice("grain"))
    assert engine.request_loras.loaded == ["grain"]
    assert np.array_equal(frames(engine, LoraChoice("glow")), glow)  # loaded again, the same


def test_the_job_meta_records_the_loras_that_ran(
    engine: ModelRunner, lora_dir: Path, tmp_path: Path
) -> None:
    services = build_services(Settings(data_dir=tmp_path, model="tiny-ltx2", lora_dir=lora_dir))
    try:
        request = GenerationRequest(
            model="tiny-ltx2", prompt="a fox", duration=1, loras=(LoraChoice("grain", 0.5),)
        )
        job_id = services.jobs.submit(OWNER, request).id
        assert Worker(services.store, services.artifacts, engine, services.settings).run_once()
        job = services.store.get_job(job_id)
        assert job and job.status is JobStatus.COMPLETED
        assert job.meta["loras"] == [{"name": "grain", "scale": 0.5}]
    finally:
        services.close()
