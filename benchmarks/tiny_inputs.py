"""CPU cost of each input path on the tiny model: text, first frame, first + last frame, a remix,
an extension and prompt enhancement, through the job service and the worker (SQLite, local files,
the real encoder), in one process.

Each path's job is timed from submit to completed, with the worker's own pipeline time
(meta.timings.generate) beside it; the text-to-video clip of the same length, measured in the same
run, is the reference each ratio divides by.

    OMP_NUM_THREADS=1 python benchmarks/tiny_inputs.py                  # 96x54, 4 s clips
    OMP_NUM_THREADS=1 python benchmarks/tiny_inputs.py --size 720x1280  # OpenAI's default size

(The tiny model gains nothing from threads, and on a 2-core machine two spin 10x slower.)
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PIL import Image

from kinema.catalog.registry import TINY_LTX2
from kinema.config import Settings
from kinema.domain import ApiKey, GenerationRequest, Job, JobStatus
from kinema.engine.pipelines import load_engine
from kinema.engine.tiny import ensure_tiny_ltx2
from kinema.service import InputFile, Services
from kinema.wiring import build_services
from kinema.worker.runner import Worker

OWNER = ApiKey(id="bench", name="bench", created_at=0.0)
PROMPT = "a paper boat drifts down a gutter"


def picture(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def timed(services: Services, worker: Worker, submit: Callable[[], Job]) -> dict[str, float]:
    start = time.perf_counter()
    job_id = submit().id
    while worker.run_once():
        pass
    worker.drain()
    wall = time.perf_counter() - start
    job = services.store.get_job(job_id)
    if job is None or job.status is not JobStatus.COMPLETED:
        raise RuntimeError(f"job {job_id} did not complete: {job and job.error_message}")
    timings = job.meta["timings"]
    return {"wall_s": wall, "pipeline_s": timings["generate"], "encode_s": timings["encode"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="96x54", help="WxH of every clip")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs per path (the median shows)")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = ensure_tiny_ltx2(root / "models")
        settings = Settings(data_dir=root / "data", model="tiny-ltx2", tiny_weights=str(weights))
        services = build_services(settings)
        worker = Worker(
            services.store, services.artifacts, load_engine(TINY_LTX2, settings), settings
        )
        try:
            results = measure(services, worker, width, height, args.seconds, args.repeats)
        finally:
            services.close()
    reference = results["text"]["wall_s"]
    for result in results.values():
        result["wall_ratio_to_text"] = round(result["wall_s"] / reference, 2)
    print(
        json.dumps(
            {
                "benchmark": "tiny_inputs",
                "size": args.size,
                "seconds": args.seconds,
                "paths": results,
            },
            indent=2,
        )
    )


def measure(
    services: Services, worker: Worker, width: int, height: int, seconds: int, repeats: int
) -> dict[str, dict[str, float]]:
    jobs = services.jobs
    request = GenerationRequest(
        model="tiny-ltx2", prompt=PROMPT, width=width, height=height, duration=seconds, seed=1
    )
    first = InputFile(picture(width, height, (250, 120, 10)), ".png")
    last = InputFile(picture(width, height, (10, 40, 250)), ".png", frame=-1)
    warm = jobs.submit(OWNER, request)  # loads what the first job would otherwise pay for
    while worker.run_once():
        pass
    worker.drain()
    paths: dict[str, Callable[[], Job]] = {
        "text": lambda: jobs.submit(OWNER, request),
        "first_frame": lambda: jobs.submit(OWNER, request, inputs=[first]),
        "first_and_last_frame": lambda: jobs.submit(OWNER, request, inputs=[first, last]),
        "enhanced_prompt": lambda: jobs.submit(OWNER, replace(request, enhance_prompt=True)),
        "remix": lambda: jobs.remix(OWNER, warm.id, "the same boat, at night"),
        "extension": lambda: jobs.extend(OWNER, warm.id, "the boat sails on", seconds),
    }
    results = {}
    for name, submit in paths.items():
        runs = [timed(services, worker, submit) for _ in range(repeats)]
        results[name] = {
            key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]
        }
    return results


if __name__ == "__main__":
    main()
