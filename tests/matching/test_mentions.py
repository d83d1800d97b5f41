"""Mention counts: how many other listings name a listing by its title."""

import pickle
import time

import numpy as np
import pytest

from matching.mentions import MentionCounts, count_mentions, is_name


class TestCountMentions:
    def test_counts_the_other_listings_that_name_a_title(self) -> None:
        titles = ["ImageNet", "COCO", "Tiny ImageNet", "Street scenes"]
        texts = [
            "ImageNet: a large image database.",
            "COCO: objects in context. Pretrained on ImageNet.",
            "Tiny ImageNet is a subset of ImageNet, as is ImageNet-A.",
            "Street scenes annotated like COCO, with ImageNet labels.",
        ]
        assert count_mentions(titles, texts).tolist() == [3, 1, 0, 0]

    def test_a_mention_keeps_the_case_and_whole_words_of_the_title(self) -> None:
        titles = ["AND", "CIFAR-10", "MAP", "Pets"]
        texts = [
            "AND: author name disambiguation.",
            "CIFAR-10: tiny images.",
            "MAP: a dataset of maps.",
            "Cats and dogs, with a map of where; unlike CIFAR-100 or CIFAR-10.5 and MAPS.",
        ]
        assert count_mentions(titles, texts).tolist() == [0, 0, 0, 0]

    def test_a_title_ends_at_punctuation_and_spans_the_words_of_a_name(self) -> None:
        titles = ["CIFAR-10", "Helsinki-NLP/opus-mt-en-de", "WMT 2014", "roberta-base"]
        texts = [
            "CIFAR-10",
            "Helsinki-NLP/opus-mt-en-de translates.",
            "WMT 2014",
            "A model.",
            "Trained on CIFAR-10. Evaluated on WMT 2014, as Helsinki-NLP/opus-mt-en-de was.",
            "Fine-tuned from roberta-base (see roberta-base).",
        ]
        assert count_mentions([*titles, "", ""], texts).tolist()[:4] == [1, 1, 1, 1]

    def test_titles_longer_than_a_name_are_not_counted(self) -> None:
        title = "A corpus of five words"
        assert not is_name(title)
        assert not is_name("")
        assert count_mentions([title, "b"], [title, f"See {title}."]).tolist() == [0, 0]

    def test_listings_sharing_a_title_share_its_count(self) -> None:
        titles = ["KITTI", "KITTI", "Road scenes"]
        texts = ["KITTI v1", "KITTI v2", "Recorded like KITTI and KITTI."]
        # Naming one's own title never counts, even where another listing shares it.
        assert count_mentions(titles, texts).tolist() == [1, 1, 0]

    def test_an_owner_naming_a_title_counts_once_and_never_for_its_own(self) -> None:
        titles = ["ImageNet", "A", "B", "C", "D"]
        texts = ["ImageNet", "Uses ImageNet.", "Uses ImageNet.", "Uses ImageNet.", "ImageNet."]
        # Listings 0 and 4 belong to owner 7; 1 and 2 to owner 3; 3 to owner 5.
        counts = count_mentions(titles, texts, owners=[7, 3, 3, 5, 7])
        assert counts.tolist() == [2, 0, 0, 0, 0]

    def test_refuses_owners_that_do_not_pair_with_the_titles(self) -> None:
        with pytest.raises(ValueError, match="1 owners for 2 titles"):
            count_mentions(["A", "B"], ["a", "b"], owners=[1])

    @pytest.mark.parametrize("texts", [["a"], ["a", "b", "c"]])
    def test_refuses_texts_that_do_not_pair_with_the_titles(self, texts: list[str]) -> None:
        with pytest.raises(ValueError, match="texts for 2 titles"):
            count_mentions(["A", "B"], texts)

    def test_reads_titles_before_texts_from_iterators(self) -> None:
        titles = iter(["ImageNet", "Other"])
        texts = iter(["ImageNet", "Uses ImageNet."])
        assert count_mentions(titles, texts).tolist() == [1, 0]

    def test_a_chinese_name_is_found_inside_a_sentence(self) -> None:
        titles = ["合肥交通数据集", "路网模型", "Hefei交通流量"]
        texts = [
            "合肥交通数据集",
            "基于合肥交通数据集训练的模型，参考Hefei交通流量。",
            "合肥交通数据",  # a shorter text is no mention
        ]
        assert count_mentions(titles, texts).tolist() == [1, 0, 1]

    def test_a_chinese_title_longer_than_a_name_is_not_counted(self) -> None:
        long_title = "合肥市二〇二三年全市主要道路交通流量统计数据"
        assert not is_name(long_title)
        assert is_name("合肥市道路交通流量数据集")  # 12 characters
        assert count_mentions([long_title, "x"], [long_title, long_title]).tolist() == [0, 0]

    def test_counts_across_batches_of_texts(self) -> None:
        titles = ["ImageNet", *(f"Listing {n}" for n in range(2_999))]
        texts = ["ImageNet", *(f"Listing {n} uses ImageNet." for n in range(2_999))]
        counts = count_mentions(titles, texts)
        assert counts[0] == 2_999 and not counts[1:].any()


class TestMentionCounts:
    def test_holds_counts_by_id_and_zero_elsewhere(self) -> None:
        counts = MentionCounts()
        counts.replace(np.array([3, 7]), np.array([5, 2], dtype=np.int32))
        assert counts.of(np.array([7, 3, 4, 99])).tolist() == [2, 5, 0, 0]

    def test_is_due_once_a_share_of_the_listings_changed(self) -> None:
        counts = MentionCounts(share=0.1, seconds=3600)
        assert not counts.due(held=100)
        counts.changed(9)
        assert not counts.due(held=100)
        counts.changed(1)
        assert counts.due(held=100)
        counts.start()
        assert not counts.due(held=100)

    def test_is_due_after_its_interval_when_anything_changed(self) -> None:
        counts = MentionCounts(share=0.5, seconds=0.01)
        time.sleep(0.02)
        assert not counts.due(held=100)  # nothing changed
        counts.changed(1)
        assert counts.due(held=100)

    def test_a_small_catalogue_counts_again_after_any_change(self) -> None:
        counts = MentionCounts(share=0.02, seconds=3600)
        counts.changed(1)
        assert counts.due(held=10)

    def test_pickles_with_its_counts_and_pending_changes(self) -> None:
        counts = MentionCounts(share=0.5, seconds=3600)
        counts.replace(np.array([1]), np.array([4], dtype=np.int32))
        counts.changed(3)
        restored = pickle.loads(pickle.dumps(counts))
        assert restored.of(np.array([1])).tolist() == [4]
        assert restored.due(held=6) and not restored.due(held=8)


@pytest.mark.parametrize(("words", "name"), [(1, True), (4, True), (5, False)])
def test_a_name_has_up_to_four_words(words: int, name: bool) -> None:
    assert is_name(" ".join(["Name"] * words)) is name
