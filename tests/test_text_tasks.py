"""Text tasks on the bundled pydoc_data corpus: determinism, shapes, shifts, masks, classes."""

from __future__ import annotations

import pytest
import torch

from automl import SearchSpace, SpaceError
from automl_plugins.tasks.text import (
    LanguageModellingTask,
    MaskedLanguageModellingTask,
    WordOrderTask,
    corpus_text,
    encoded_corpus,
)


def test_the_corpus_is_real_english_text_from_the_standard_library():
    text = corpus_text()
    assert len(text) > 300_000
    assert "Assert statements are a convenient way to insert debugging" in text
    ids, vocab = encoded_corpus("word", 2000)
    assert len(vocab) == 2000 and vocab[0] == "<unk>" and vocab[2] == "the" and "__init__" in vocab
    assert (ids == 0).float().mean() < 0.03  # 1,999 tokens cover more than 97% of the text
    assert "*****" not in " ".join(vocab)


def test_tokenisation_is_deterministic_and_splits_are_disjoint_and_ordered():
    task = LanguageModellingTask.configure({"seq_len": 16})
    again = LanguageModellingTask.configure({"seq_len": 16})
    assert task.fingerprint() == again.fingerprint()
    assert torch.equal(task.batch(8, seed=3).inputs, again.batch(8, seed=3).inputs)
    sizes = {name: len(task.tokens_of(name)) for name in ("train", "val", "test")}
    total = len(encoded_corpus("word", 2000)[0])
    assert sum(sizes.values()) == total and sizes["train"] == int(total * 0.8)
    with pytest.raises(ValueError, match="unknown split"):
        task.split("dev")


def test_language_modelling_targets_are_inputs_shifted_by_one():
    task = LanguageModellingTask.configure({"seq_len": 10, "batch_size": 4})
    data = task.split("train")
    assert data.inputs.dtype == torch.long and data.inputs.shape[1] == 10
    assert torch.equal(data.inputs[:, 1:], data.targets[:, :-1])
    stream = task.tokens_of("train")
    assert torch.equal(data.inputs[1], stream[11:21]) and torch.equal(data.targets[1], stream[12:22])
    assert task.batch().inputs.shape == (4, 10)
    assert task.example_input().shape == (1, 10)
    assert task.kind == "language-modelling" and task.vocab_size == 2000
    assert "the" in task.decode(data.inputs[0]).split() or len(task.decode(data.inputs[0]).split()) == 10


def test_character_tokens():
    task = LanguageModellingTask.configure({"tokens": "char", "vocab_size": 100, "seq_len": 20})
    assert task.vocab[1] == " "
    text = task.decode(task.split("val").inputs[0])
    assert len(text) == 20


def test_masked_language_modelling():
    task = MaskedLanguageModellingTask.configure({"seq_len": 20, "mask_fraction": 0.15})
    data = task.split("train")
    masked = data.inputs == task.mask_id
    assert task.vocab_size == 2001 and task.mask_id == 2000
    assert torch.equal(masked, data.targets != -100)
    assert masked.any(dim=1).all()
    assert 0.10 < masked.float().mean() < 0.20
    stream = task.tokens_of("train")
    assert torch.equal(data.targets[2][masked[2]], stream[40:60][masked[2]])
    assert torch.equal(data.inputs[2][~masked[2]], stream[40:60][~masked[2]])
    assert torch.equal(
        task.split("train").inputs, MaskedLanguageModellingTask.configure({"seq_len": 20}).split("train").inputs
    )


def test_word_order_classification_is_balanced_and_honest():
    task = WordOrderTask.configure({"seq_len": 16})
    data = task.split("train")
    assert task.kind == "text-classification" and task.num_classes == 2
    assert 0.4 < data.targets.float().mean() < 0.6
    windows = task.tokens_of("train")[: len(data) * 16].view(-1, 16)
    ordered = data.targets == 0
    assert torch.equal(data.inputs[ordered], windows[ordered])
    # Shuffled windows hold the same tokens in another order.
    assert torch.equal(data.inputs[~ordered].sort(dim=1).values, windows[~ordered].sort(dim=1).values)
    assert not torch.equal(data.inputs[~ordered], windows[~ordered])


def test_options_are_checked_in_a_search_space_file():
    base = {
        "dimensions": [{"name": "nlp_rnn"}],
        "evaluator": {"name": "proxies", "proxies": ["params"]},
        "objectives": [{"metric": "params", "direction": "minimize"}],
    }
    with pytest.raises(SpaceError, match="too long") as info:
        SearchSpace.from_dict({**base, "task": {"name": "text_lm", "seq_len": 4096}})
    assert info.value.key == "task.seq_len"
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_dict({**base, "task": {"name": "text_lm", "tokens": "bytes"}})
    assert info.value.key == "task.tokens"
    with pytest.raises(SpaceError, match="cannot take a image-classification task"):
        SearchSpace.from_dict({**base, "task": {"name": "digits"}})
