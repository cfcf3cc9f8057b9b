"""Settings: the only module that reads the environment (KINEMA_* variables)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Toggle = Literal["auto", "on", "off"]
StepCache = Literal["none", "first_block", "mag", "taylorseer"]
Offload = Literal["auto", "none", "model", "group"]


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("kinema"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KINEMA_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    model: str = "ltx-2"
    host: str = "127.0.0.1"
    port: int = 8000
    # Absolute base of download URLs; by default derived from each request's own host.
    public_url: str | None = None
    api_keys: str = ""  # comma-separated keys seeded at start

    # Weights: a Hugging Face Hub id or a local directory, per model family and component.
    ltx2_weights: str = "Lightricks/LTX-2"
    ltx2_upsampler: str | None = None  # default: the pipeline repo's latent_upsampler/
    ltx2_distilled_lora: str | None = None  # default: the pipeline repo's distilled LoRA file
    tiny_weights: str | None = None  # default: built into data_dir/models/tiny-ltx2
    # Any model's weights by id, as JSON: KINEMA_WEIGHTS='{"wan-2.2": "/models/wan22-ti2v"}'.
    weights: dict[str, str] = {}
    # LoRAs a request may ask for: <lora_dir>/<model's LoRA folder>/<name>.safetensors; a worker
    # keeps up to `loras_kept` loaded, the most recently used.
    lora_dir: Path | None = None
    loras_kept: int = Field(default=8, ge=1)
    steps: int | None = None  # override a spaced first-stage schedule (speed vs quality)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16

    # Speed and memory. "auto" turns a feature on where it cannot change the output
    # beyond noise and the hardware gains from it.
    attention_backend: str = "auto"  # auto | a diffusers attention backend name (e.g. _flash_3)
    compile: Toggle = "auto"  # regional torch.compile of the repeated transformer blocks
    fp8: bool = False  # torchao float8 weights + activations for the transformer
    step_cache: StepCache = "none"  # reuse transformer work across denoising steps
    step_cache_threshold: float = 0.05
    vae_tiling: Toggle = "auto"  # tiled VAE decode for large clips
    release_text_encoder: Toggle = "auto"  # move the text encoder off the GPU after encoding
    offload: Offload = "auto"  # auto picks none on a large GPU, model or group on a small one

    # Where jobs and artifacts live. Default: SQLite and files under data_dir (one machine).
    store_url: str | None = None  # e.g. postgresql+psycopg://kinema@db/kinema
    storage: str | None = None  # e.g. s3://bucket/prefix (endpoint/credentials: AWS_* settings)

    # The API's database and storage calls in threads at once; unset, 2 on SQLite and 4 on
    # PostgreSQL (benchmarks/load.py). Under the GIL more threads run no more Python, and on
    # SQLite each extra one mostly waits for the GIL; PostgreSQL's round trips gain from a few
    # in flight. A slow call holds its place, so raise it where the database is far away.
    api_threads: int | None = None

    max_queued_per_key: int = 100  # beyond these a create is answered 429 with Retry-After
    max_queued_total: int = 10_000
    retry_after_seconds: int = 10
    worker_liveness_seconds: float = 60.0  # a worker not seen for this long counts as gone

    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    idle_wait_seconds: float = 1.0  # an idle worker's longest wait for a wake-up (NOTIFY on PG)
    max_attempts: int = 3
    url_ttl_seconds: int = 24 * 3600
    max_body_bytes: int = 64 * 1024  # a create body's fields, besides its input images
    # The largest frame (width x height) this deployment makes, below what its model could: what
    # its GPUs' memory holds (None: whatever the model makes).
    max_output_pixels: int | None = None

    # Input images (image-to-video): fetched once by the API at create time, then stored.
    input_max_bytes: int = 20_000_000  # per image, fetched, uploaded or base64
    input_timeout_seconds: float = 10.0  # to fetch one image URL, redirects included
    input_allow_http: bool = False  # plain http:// image URLs (https always)
    input_allow_private: bool = False  # image URLs on private/loopback/link-local addresses
    progress_min_interval: float = 0.25

    @property
    def create_body_limit(self) -> int:
        """A create body's size limit: its fields plus two input images as base64."""
        return self.max_body_bytes + 2 * 4 * -(-self.input_max_bytes // 3)

    # Webhooks: POSTed when a job ends, signed per Standard Webhooks with the key's secret.
    webhook_url: str | None = None  # for jobs that name no callback_url of their own
    webhook_allow_private: bool = False  # allow private/loopback/link-local destinations
    webhook_timeout_seconds: float = 10.0
    webhook_retry_seconds: float = 5.0  # the first retry's delay; doubled on every failure
    webhook_max_retry_seconds: float = 3600.0  # retries are never further apart than this
    webhook_give_up_seconds: float = 24 * 3600.0  # no more tries this long after the job ended

    # Retention: finished jobs older than this are removed with their files (None: kept forever).
    # Deleted jobs are removed for good once they have ended, whatever this says.
    retention_hours: float | None = None
    housekeeping_seconds: float = 60.0  # how often each API process looks for jobs to remove

    @property
    def heartbeat_interval(self) -> float:
        """Renew leases often enough that one late heartbeat never loses a job."""
        return min(self.heartbeat_seconds, self.lease_seconds / 3)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "kinema.db"

    @property
    def api_thread_calls(self) -> int:
        if self.api_threads is not None:
            return self.api_threads
        return 4 if self.database_url.startswith("postgres") else 2

    @property
    def database_url(self) -> str:
        return self.store_url or f"sqlite:///{self.database_path}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "signing.key"

    def weights_for(self, keys: Sequence[str], default: str) -> str:
        """The weights location for a model: the first of its `keys` (its id, then the model
        whose weights it shares) in KINEMA_WEIGHTS or in that model's own setting, else the
        catalog's `default`."""
        overrides = {"ltx-2": self.ltx2_weights, "tiny-ltx2": self.tiny_weights}
        for key in keys:
            if chosen := self.weights.get(key) or overrides.get(key):
                return chosen
        return default

    @property
    def compile_cache_dir(self) -> Path:
        return self.data_dir / "compile-cache"
