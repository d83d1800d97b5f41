"""The ONNX export of the model and its query encoder: the same vectors, a fraction of the start."""

import re
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


class TestOnnxEncoder:
    def test_gives_the_models_fp32_vectors(
        self, onnx_export: Path, embedder: SentenceTransformerEmbedder
    ) -> None:
        encoder = OnnxEncoder(onnx_export)
        assert (encoder.model_name, encoder.dimension) == (embedder.model_name, 384)
        # One padded batch, a Chinese text and one past the model's 256-token window.
        vectors = encoder.encode(TEXTS, batch_size=3)
        expected = embedder.encode_with(TEXTS, precision="fp32")
        assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
        assert float(np.min(np.sum(vectors * expected, axis=1))) > 0.9999
        alone = np.concatenate([encoder.encode([text]) for text in TEXTS])
        np.testing.assert_allclose(alone, vectors, atol=1e-5)

    def test_pools_spans_from_one_pass_as_the_model_does(
        self, onnx_export: Path, embedder: SentenceTransformerEmbedder
    ) -> None:
        # More texts than one forward pass holds, of mixed lengths, so sorting by length
        # must not reorder the results.
        texts = [*TEXTS, *(f"Sensor {n}. Counts per hour. " * (1 + 7 * n) for n in range(9))]
        spans = [
            [(m.start(), m.end()) for m in re.finditer(r"[^.。]+[.。]?", text)] for text in texts
        ]
        vectors, pooled = OnnxEncoder(onnx_export).encode_spans(texts, spans, batch_size=32)
        expected, expected_pooled = embedder.encode_spans(texts, spans)
        assert float(np.min(np.sum(vectors * expected, axis=1))) > 0.9999
        # The long texts lose the spans past the model's window, alike.
        assert [p.shape for p in pooled] == [p.shape for p in expected_pooled]
        assert any(len(p) < len(s) for p, s in zip(pooled, spans, strict=True))
        for own, reference in zip(pooled, expected_pooled, strict=True):
            assert float(np.min(np.sum(own * reference, axis=1), initial=1.0)) > 0.9999
        with pytest.raises(ValueError, match="lists of spans"):
            OnnxEncoder(onnx_export).encode_spans(texts, spans[1:])

    def test_takes_a_list_of_texts(self, onnx_export: Path) -> None:
        encoder = OnnxEncoder(onnx_export)
        assert encoder.encode([]).shape == (0, 384)
        with pytest.raises(TypeError, match="not a single string"):
            encoder.encode("GPU")

    def test_an_incomplete_export_is_not_read(self, onnx_export: Path, tmp_path: Path) -> None:
        partial = tmp_path / "partial"
        partial.mkdir()
        for name in ("encoder.json", "tokenizer.json"):
            (partial / name).write_bytes((onnx_export / name).read_bytes())
        assert read_config(partial) is None and read_config(onnx_export) is not None
        with pytest.raises(ValueError, match="no ONNX export"):
            OnnxEncoder(partial)

    def test_exporting_again_replaces_the_folder(
        self, onnx_export: Path, embedder: SentenceTransformerEmbedder, tmp_path: Path
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
