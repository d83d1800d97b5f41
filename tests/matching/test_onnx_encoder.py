"""The ONNX export of the model and its query encoder: the same vectors, a fraction of the start."""

from pathlib import Path

import numpy as np
import pytest

from matching.embedding import SentenceTransformerEmbedder, default_model_path
from matching.onnx_encoder import MODEL_FILE, OnnxEncoder, read_config

pytestmark = pytest.mark.slow

TEXTS = (
    "Forecast congestion on urban roads a day ahead.",
    "合肥市公交客流预测场景",
    "GPU",
    "Eight A100 GPUs in a Shanghai data centre, rented by the hour. " * 40,
)


@pytest.fixture(scope="module")
def exported(
    embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("onnx") / "minilm"
    assert embedder.export_onnx(folder)
    return folder


class TestOnnxEncoder:
    def test_gives_the_models_fp32_vectors(
        self, exported: Path, embedder: SentenceTransformerEmbedder
    ) -> None:
        encoder = OnnxEncoder(exported)
        assert (encoder.model_name, encoder.dimension) == (embedder.model_name, 384)
        # One padded batch, a Chinese text and one past the model's 256-token window.
        vectors = encoder.encode(TEXTS, batch_size=3)
        expected = embedder.encode_with(TEXTS, precision="fp32")
        assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
        assert float(np.min(np.sum(vectors * expected, axis=1))) > 0.9999
        alone = np.concatenate([encoder.encode([text]) for text in TEXTS])
        np.testing.assert_allclose(alone, vectors, atol=1e-5)

    def test_takes_a_list_of_texts(self, exported: Path) -> None:
        encoder = OnnxEncoder(exported)
        assert encoder.encode([]).shape == (0, 384)
        with pytest.raises(TypeError, match="not a single string"):
            encoder.encode("GPU")

    def test_an_incomplete_export_is_not_read(self, exported: Path, tmp_path: Path) -> None:
        partial = tmp_path / "partial"
        partial.mkdir()
        for name in ("encoder.json", "tokenizer.json"):
            (partial / name).write_bytes((exported / name).read_bytes())
        assert read_config(partial) is None and read_config(exported) is not None
        with pytest.raises(ValueError, match="no ONNX export"):
            OnnxEncoder(partial)

    def test_exporting_again_replaces_the_folder(
        self, exported: Path, embedder: SentenceTransformerEmbedder, tmp_path: Path
    ) -> None:
        folder = tmp_path / "again"
        folder.mkdir()
        (folder / "stale.txt").write_text("left over")
        assert embedder.export_onnx(folder)
        assert not (folder / "stale.txt").exists() and (folder / MODEL_FILE).is_file()
        assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no staging folder left

    def test_a_model_that_does_not_pool_token_means_is_not_exported(self, tmp_path: Path) -> None:
        from sentence_transformers import SentenceTransformer, models

        transformer = models.Transformer(default_model_path())
        pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="cls")
        SentenceTransformer(modules=[transformer, pooling]).save(str(tmp_path / "cls"))
        cls_model = SentenceTransformerEmbedder(str(tmp_path / "cls"))
        assert not cls_model.export_onnx(tmp_path / "export")
        assert not (tmp_path / "export").exists()
