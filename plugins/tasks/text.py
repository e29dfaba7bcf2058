"""Text tasks on an English corpus that ships with Python: the documentation topics of ``pydoc_data``.

``pydoc_data.topics.topics`` (part of the standard library, nothing downloaded) holds the language
reference's topics: about 465,000 characters of English prose with code examples. The topics are joined
in sorted-key order and tokenised deterministically:

- ``tokens = "word"``: lower-cased words (identifiers such as ``__init__`` whole), numbers and single punctuation marks (layout rules such as
  ``*****`` removed); the ``vocab_size - 1`` most frequent tokens (ties broken alphabetically) plus
  ``<unk>`` at id 0 (about 97,000 tokens, 3,600 distinct; the 1,999 most frequent cover 97.7%);
- ``tokens = "char"``: characters; the ``vocab_size - 1`` most frequent plus ``<unk>``.

The token stream is split in order: the first 80% for training, the next 10% validation, the last 10% test.

Tasks:

- ``text_lm`` (language modelling): each split is cut into non-overlapping windows of ``seq_len + 1``
  tokens; ``inputs`` are the first ``seq_len`` (``B×T`` long), ``targets`` the same shifted by one.
  Models return ``B×T×V`` logits; the loss is cross-entropy over ``logits.reshape(-1, V)`` and
  ``targets.reshape(-1)``.
- ``text_mlm`` (masked language modelling, for encoders): the same windows of ``seq_len`` tokens, with
  ``mask_fraction`` of the positions (fixed per window by ``split_seed``) replaced by the ``<mask>`` token
  (the last id); ``targets`` holds the original token at masked positions and ``-100`` (cross-entropy's
  ignore index) elsewhere.
- ``text_order`` (text classification, 2 classes): is a window of ``seq_len`` tokens in its original
  order (class 0) or are its tokens shuffled (class 1)? Every window appears once, in one of the two
  forms, chosen by ``split_seed``; both classes have the same bag of words, so only word order tells
  them apart — an honest, if simple, sequence-classification task built from the same corpus.
"""

from __future__ import annotations

import functools
import re
from abc import abstractmethod
from collections import Counter
from typing import Any

import torch

from automl import Batch, Option, SpaceError, Task

UNK = "<unk>"
MASK = "<mask>"
SPLITS = ("train", "val", "test")
_WORD = re.compile(r"[a-z_][a-z0-9_]*|[0-9]+|[^\sa-z0-9_]")
_RULE = re.compile(r"([^\w\s])\1{2,}")


@functools.lru_cache(maxsize=1)
def corpus_text() -> str:
    """The corpus: every ``pydoc_data`` topic, in sorted-key order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def tokenize(text: str, tokens: str) -> list[str]:
    """Words, numbers and punctuation marks (``"word"``) or characters (``"char"``).

    Runs of three or more equal punctuation marks (heading underlines, table borders) are dropped first:
    they are layout, not language.
    """
    text = _RULE.sub(" ", text)
    return _WORD.findall(text.lower()) if tokens == "word" else list(text)


@functools.lru_cache(maxsize=8)
def encoded_corpus(tokens: str, vocab_size: int) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The token ids of the whole corpus and the vocabulary (id 0 is ``<unk>``)."""
    stream = tokenize(corpus_text(), tokens)
    counts = Counter(stream)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))[: vocab_size - 1]
    vocab = (UNK, *ranked)
    index = {token: i for i, token in enumerate(vocab)}
    ids = torch.tensor([index.get(t, 0) for t in stream], dtype=torch.long)
    return ids, vocab


def _split_ranges(n: int) -> dict[str, tuple[int, int]]:
    train_end, val_end = int(n * 0.8), int(n * 0.9)
    return {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, n)}


def _windows(ids: torch.Tensor, length: int) -> torch.Tensor:
    count = len(ids) // length
    return ids[: count * length].view(count, length)


class TextTask(Task):
    """Shared options and corpus handling of the text tasks."""

    example = {"seq_len": 8, "vocab_size": 100, "batch_size": 8}
    options = {
        "batch_size": Option(int, default=32, min=1, max=4096, help="minibatch size for proxies and training"),
        "seq_len": Option(int, default=32, min=2, max=4096, help="tokens per sequence"),
        "tokens": Option(str, default="word", choices=("word", "char"), help="word-level or character-level"),
        "vocab_size": Option(
            int, default=2000, min=16, max=50000, help="vocabulary size, <unk> included (<mask> adds one for text_mlm)"
        ),
        "split_seed": Option(int, default=0, min=0, max=2**32 - 1, help="seed of the masking / shuffling"),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        ids, vocab = encoded_corpus(settings["tokens"], settings["vocab_size"])
        self.vocab = vocab
        self.vocab_size = len(vocab)
        self.input_shape = (settings["seq_len"],)
        smallest = min(end - start for start, end in _split_ranges(len(ids)).values())
        if smallest < 4 * (settings["seq_len"] + 1):
            raise SpaceError(
                f"seq_len {settings['seq_len']} is too long for the corpus's smallest split ({smallest} tokens)",
                key="seq_len",
            )

    def tokens_of(self, name: str) -> torch.Tensor:
        """The token ids of one split, in corpus order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; the text tasks have {', '.join(SPLITS)}")
        ids, _ = encoded_corpus(self.settings["tokens"], self.settings["vocab_size"])
        start, end = _split_ranges(len(ids))[name]
        return ids[start:end]

    def decode(self, ids: torch.Tensor) -> str:
        """Token ids back to text (for reading samples)."""
        joiner = " " if self.settings["tokens"] == "word" else ""
        return joiner.join(self.vocab[i] if i < len(self.vocab) else MASK for i in ids.tolist())

    def split(self, name: str) -> Batch:
        """The whole split as windows of the task's layout (built once per task)."""
        cache = self.__dict__.setdefault("_splits", {})
        if name not in cache:
            cache[name] = self._make_split(name)
        return cache[name]

    @abstractmethod
    def _make_split(self, name: str) -> Batch:
        """Split ``name``, built once (``split`` keeps it)."""

    def _generator(self, name: str) -> torch.Generator:
        return torch.Generator().manual_seed(self.settings["split_seed"] * 10 + SPLITS.index(name))


class LanguageModellingTask(TextTask):
    name = "text_lm"
    description = "next-token prediction on Python's bundled documentation text (pydoc_data), B×T tokens"
    kind = "language-modelling"

    def _make_split(self, name: str) -> Batch:
        windows = _windows(self.tokens_of(name), self.settings["seq_len"] + 1)
        return Batch(windows[:, :-1].contiguous(), windows[:, 1:].contiguous())


class MaskedLanguageModellingTask(TextTask):
    name = "text_mlm"
    description = "masked-token prediction on Python's bundled documentation text (targets -100 where unmasked)"
    kind = "language-modelling"
    options = {
        **TextTask.options,
        "mask_fraction": Option(float, default=0.15, min=0.01, max=0.9, help="share of positions masked"),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.mask_id = len(self.vocab)
        self.vocab_size = len(self.vocab) + 1

    def _make_split(self, name: str) -> Batch:
        windows = _windows(self.tokens_of(name), self.settings["seq_len"])
        masked = torch.rand(windows.shape, generator=self._generator(name)) < self.settings["mask_fraction"]
        masked[:, 0] |= ~masked.any(dim=1)  # every window predicts at least one token
        inputs = windows.masked_fill(masked, self.mask_id)
        targets = windows.masked_fill(~masked, -100)
        return Batch(inputs, targets)


class WordOrderTask(TextTask):
    name = "text_order"
    description = "text classification: is a window of the bundled documentation text in order or shuffled?"
    kind = "text-classification"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.num_classes = 2

    def _make_split(self, name: str) -> Batch:
        windows = _windows(self.tokens_of(name), self.settings["seq_len"]).clone()
        gen = self._generator(name)
        labels = torch.randint(0, 2, (len(windows),), generator=gen)
        for i in torch.nonzero(labels).flatten().tolist():
            windows[i] = windows[i][torch.randperm(windows.shape[1], generator=gen)]
        return Batch(windows, labels)
