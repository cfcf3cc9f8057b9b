"""Wall time of one 5 s tiny clip through HTTP: create → poll → download, on a warm server.

Starts `kinema serve --model tiny-ltx2` (one worker), makes one warm-up clip (model load), then
times N clips one after another and prints one JSON line. The reference is the pipeline time the
worker itself measured for the same clips (meta.timings.generate), so the ratio shows what the
queue, encoding, storage and HTTP add on top of the model.

    python benchmarks/tiny_clip.py --clips 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _servers import BENCH_KEY, start_kinema
from kinema import Client


def one_clip(client: Client, out: Path, seed: int) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    created = client.create("a red fox trotting through snow", duration=5, seed=seed)
    done = client.wait(created.id, poll_interval=0.05, timeout=300)
    client.download(done, out)
    wall = time.perf_counter() - start
    if done.status != "completed":
        raise RuntimeError(f"clip failed: {done.error}")
    return wall, done.meta["timings"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_kinema(Path(tmp) / "data", "--workers", "1")
        try:
            with Client(url, BENCH_KEY) as client:
                warm_up, _ = one_clip(client, Path(tmp) / "warm.mp4", seed=0)
                runs = [one_clip(client, Path(tmp) / f"{i}.mp4", seed=i) for i in range(args.clips)]
        finally:
            server.terminate()
            server.wait()
    walls = [wall for wall, _ in runs]
    generate = [timings["generate"] for _, timings in runs]
    encode = [timings["encode"] for _, timings in runs]
    print(
        json.dumps(
            {
                "benchmark": "tiny_clip_http",
                "clips": args.clips,
                "first_clip_s_including_model_build_and_load": round(warm_up, 3),
                "wall_s_median": round(statistics.median(walls), 3),
                "wall_s_max": round(max(walls), 3),
                "pipeline_s_median": round(statistics.median(generate), 3),
                "encode_s_median": round(statistics.median(encode), 3),
                "ratio_wall_vs_pipeline": round(
                    statistics.median(walls) / statistics.median(generate), 2
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
