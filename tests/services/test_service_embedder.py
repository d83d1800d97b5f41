"""The app's embedder: which encoder embeds queries and writes, with and without an ONNX export."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marketplace import embedder as service
from marketplace.settings import Settings
from matching.embedding import SentenceTransformerEmbedder
from matching.onnx_encoder import OnnxEncoder

pytestmark = pytest.mark.slow

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def _install(export: Path, settings: Settings) -> Path:
    folder = service.onnx_folder(settings, MODEL)
    shutil.copytree(export, folder)
    return folder


class TestServiceEmbedder:
    def test_with_an_export_and_no_native_bf16_everything_uses_the_export(
        self, settings: Settings, onnx_export: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _install(onnx_export, settings)
        monkeypatch.setattr(service, "bf16_supported", lambda: False)
        loading = service.service_embedder(settings)
        assert loading.queries_ready and not loading.ready  # queries before any start
        writes = loading.wait(timeout=30)
        assert isinstance(writes, OnnxEncoder) and writes.model_name == MODEL

    def test_with_native_bf16_writes_use_the_model(
        self,
        settings: Settings,
        onnx_export: Path,
        embedder: SentenceTransformerEmbedder,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        _install(onnx_export, settings)
        monkeypatch.setattr(service, "bf16_supported", lambda: True)
        loading = service.service_embedder(settings)
        assert loading.wait(timeout=60) is embedder
        # Queries still go to the export, which gives the model's fp32 vectors (the model's own
        # queries run in bf16 on this CPU).
        query = loading.encode(["traffic counts"])
        fp32 = embedder.encode_with(["traffic counts"], precision="fp32")
        np.testing.assert_allclose(query, fp32, atol=1e-4)

    def test_without_an_export_the_model_loads_and_writes_one(
        self, settings: Settings, embedder: SentenceTransformerEmbedder
    ) -> None:
        loading = service.service_embedder(settings)
        assert not loading.queries_ready
        assert loading.wait(timeout=120) is embedder
        assert loading.queries_ready
        assert (service.onnx_folder(settings, MODEL) / "model.onnx").is_file()

    def test_turned_off_nothing_is_exported(
        self, tmp_path: Path, embedder: SentenceTransformerEmbedder
    ) -> None:
        settings = Settings(data_dir=tmp_path / "data", onnx=False)
        assert service.service_embedder(settings).wait(timeout=60) is embedder
        assert not (settings.data_dir / "models").exists()

    def test_writes_on_the_export_never_import_torch(
        self, settings: Settings, onnx_export: Path
    ) -> None:
        _install(onnx_export, settings)
        script = f"""
import sys
from marketplace import embedder as service
from marketplace.settings import Settings
service.bf16_supported = lambda: False
loading = service.service_embedder(Settings(data_dir={str(settings.data_dir)!r}))
vectors, sentences = loading.encode_spans(["Traffic counts. Hourly."], [[(0, 15), (16, 23)]])
assert vectors.shape == (1, 384) and sentences[0].shape == (2, 384)
loading.wait(timeout=60)  # the writes' encoder, once in, is the export too
assert "torch" not in sys.modules, "torch was imported"
"""
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
