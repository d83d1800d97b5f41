"""Configuration from the environment (`SCX_` prefix), read when the app or CLI starts."""

from pathlib import Path

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

    @property
    def resolved_database_url(self) -> str:
        """The configured database, or the embedded SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'marketplace.db').resolve()}"
