"""Tokenization of English and Chinese text for lexical matching."""

import subprocess
import sys
from pathlib import Path

import pytest

from matching.text import cjk_share, split_sentences, stem, tokenize


class TestTokenize:
    def test_lowercases_and_drops_english_stop_words(self) -> None:
        assert tokenize("The Traffic of the City") == ["traffic", "city"]

    def test_strips_english_plurals(self) -> None:
        assert tokenize("datasets queries boxes classes") == ["dataset", "query", "box", "class"]

    def test_segments_chinese_into_words(self) -> None:
        tokens = tokenize("城市交通流量预测")
        assert {"城市", "交通", "流量", "预测"} <= set(tokens)

    def test_drops_chinese_function_words(self) -> None:
        assert "的" not in tokenize("城市的交通")

    def test_keeps_english_words_inside_chinese_text(self) -> None:
        tokens = tokenize("上海GPU算力, 8x H100")
        assert {"上海", "gpu", "算力", "8x", "h100"} <= set(tokens)

    def test_normalises_full_width_characters(self) -> None:
        assert tokenize("ＧＰＵ") == ["gpu"]

    def test_initialises_jieba_without_output(self) -> None:
        code = "from matching.text import tokenize; tokenize('城市交通')"
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parents[2],
        )
        assert result.stdout == ""
        assert result.stderr == ""


class TestStem:
    def test_keeps_words_ending_in_ss_us_is(self) -> None:
        assert [stem(w) for w in ("class", "corpus", "analysis")] == ["class", "corpus", "analysis"]

    def test_keeps_short_words_and_numbers(self) -> None:
        assert [stem(w) for w in ("gas", "h100s", "bus")] == ["gas", "h100s", "bus"]


class TestCjkShare:
    def test_counts_cjk_characters_among_letters_and_digits(self) -> None:
        assert cjk_share("水质 data") == pytest.approx(2 / 6)

    def test_is_zero_without_letters(self) -> None:
        assert cjk_share("!? …") == 0.0


class TestSplitSentences:
    def test_splits_english_and_chinese_sentences(self) -> None:
        text = "Traffic counts. Hourly data!\n\n城市交通。每小时更新！"
        expected = ["Traffic counts.", "Hourly data!", "城市交通。", "每小时更新！"]
        assert split_sentences(text) == expected

    def test_reads_markdown_headings_lists_and_wrapped_lines(self) -> None:
        text = "## Scope\nWe offer:\n* **Hosted API** in\n  Beijing;\n1. `vLLM` images"
        assert split_sentences(text) == ["We offer:", "Hosted API in Beijing;", "vLLM images"]
