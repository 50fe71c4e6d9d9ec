"""Dataset generators for architecture tasks: every dataset is made from a seed, never fetched.

``make(name, seed, params)`` returns a ``Dataset``: fixed training and validation tensors.
Generated tasks draw a large training set once (minibatches are sampled from it), so a
run is reproducible from the task's seed alone. Runs inside the sandbox child.
"""

from __future__ import annotations

import gzip
import importlib.util
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

IGNORE = -100  # label of positions that carry no target (cross-entropy's ignore_index)


@dataclass
class Dataset:
    """Inputs and labels for training and validation; ``vocab`` for token tasks."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor  # held out from early stopping and model selection: the reported score
    test_y: torch.Tensor
    vocab: int = 0
    classes: int = 0
    chance: float = 0.0  # the accuracy of the best guess that ignores the input


Splits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _split(x: torch.Tensor, y: torch.Tensor, val: int, test: int) -> Splits:
    """(train, val, test) inputs and labels: the first ``val``, the next ``test``, the rest."""
    held = val + test
    return x[held:], y[held:], x[:val], y[:val], x[val:held], y[val:held]


def mqar(seed: int, *, seq_len: int = 64, num_pairs: int = 8, num_keys: int = 32,
         num_values: int = 32, train_size: int = 20000, val_size: int = 512,
         test_size: int = 1024) -> Dataset:
    """Multi-query associative recall (Zoology): ``k1 v1 ... kP vP`` then queries ``k``.

    Keys are tokens ``[0, num_keys)``, values ``[num_keys, num_keys + num_values)``. After the
    ``num_pairs`` key-value pairs every position holds a query key drawn from the pairs, and
    its label is that key's value; the pair positions carry no label.
    """
    if 2 * num_pairs >= seq_len or num_pairs > num_keys:
        raise ValueError(f"mqar: num_pairs={num_pairs} needs seq_len > {2 * num_pairs} and "
                         f"num_keys >= num_pairs (got seq_len={seq_len}, num_keys={num_keys})")
    g = torch.Generator().manual_seed(seed)
    n = train_size + val_size + test_size
    keys = torch.rand(n, num_keys, generator=g).argsort(dim=1)[:, :num_pairs]
    values = torch.randint(num_keys, num_keys + num_values, (n, num_pairs), generator=g)
    x = torch.zeros(n, seq_len, dtype=torch.long)
    y = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    x[:, 0 : 2 * num_pairs : 2] = keys
    x[:, 1 : 2 * num_pairs : 2] = values
    which = torch.randint(0, num_pairs, (n, seq_len - 2 * num_pairs), generator=g)
    x[:, 2 * num_pairs :] = torch.gather(keys, 1, which)
    y[:, 2 * num_pairs :] = torch.gather(values, 1, which)
    return Dataset(*_split(x, y, val_size, test_size), vocab=num_keys + num_values,
                   chance=1.0 / num_values)  # fmt: skip


def selective_copy(seed: int, *, seq_len: int = 48, num_tokens: int = 6, num_symbols: int = 16,
                   train_size: int = 20000, val_size: int = 512, test_size: int = 1024) -> Dataset:
    """Selective copying (Mamba): remember the data tokens scattered among noise, in order.

    Token 0 is noise, ``[1, num_symbols]`` are data, then a separator and a query token. The
    body of ``seq_len - num_tokens`` positions holds ``num_tokens`` data tokens at random
    places; then the separator and ``num_tokens - 1`` query tokens, at which the model must
    output the data tokens in their order of appearance.
    """
    body = seq_len - num_tokens
    if num_tokens < 1 or body <= num_tokens:
        raise ValueError(f"selective_copy: seq_len={seq_len} is too short for "
                         f"num_tokens={num_tokens}; make seq_len > 2 * num_tokens")
    g = torch.Generator().manual_seed(seed)
    n = train_size + val_size + test_size
    sep, query = num_symbols + 1, num_symbols + 2
    data = torch.randint(1, num_symbols + 1, (n, num_tokens), generator=g)
    places = torch.rand(n, body, generator=g).argsort(dim=1)[:, :num_tokens].sort(dim=1).values
    x = torch.zeros(n, seq_len, dtype=torch.long)
    x.scatter_(1, places, data)
    x[:, body] = sep
    x[:, body + 1 :] = query
    y = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    y[:, body:] = data
    return Dataset(*_split(x, y, val_size, test_size), vocab=num_symbols + 3,
                   chance=1.0 / num_symbols)


def _digits_arrays() -> tuple[Any, Any]:
    """scikit-learn's bundled 8x8 digits, read from the package's own data file.

    Reading the CSV directly avoids importing scikit-learn (seconds) in every sandbox
    child; if the file is not where it has been since scikit-learn 0.x, the public loader is
    used instead.
    """
    import numpy

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise RuntimeError("the digits task needs scikit-learn; install it with "
                           "`pip install scikit-learn` (its digits data ships in the wheel)")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        with gzip.open(path, "rt") as handle:
            table = numpy.loadtxt(handle, delimiter=",", dtype=numpy.float32)
        return table[:, :-1], table[:, -1].astype(numpy.int64)
    from sklearn.datasets import load_digits  # pragma: no cover - older or newer layouts

    bunch = load_digits()  # pragma: no cover
    return bunch.data.astype(numpy.float32), bunch.target.astype(numpy.int64)  # pragma: no cover


def digits(seed: int, *, val_size: int = 300, test_size: int = 397) -> Dataset:
    """The 1,797 8x8 handwritten digits, scaled to [0, 1], in a seeded train/val/test split."""
    pixels, labels = _digits_arrays()
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    x = torch.from_numpy(pixels).view(-1, 1, 8, 8)[order] / 16.0
    y = torch.from_numpy(labels)[order]
    counts = torch.bincount(y[val_size + test_size :], minlength=10).float()
    return Dataset(*_split(x, y, val_size, test_size), classes=10,
                   chance=float(counts.max() / counts.sum()))


# A small English-like grammar with number agreement, relative clauses and brackets, so a
# character model has both local (spelling) and long-range (agreement, nesting) structure.
_NOUNS = {"s": ["cat", "dog", "bird", "child", "robot", "teacher", "river", "garden"],
          "p": ["cats", "dogs", "birds", "children", "robots", "teachers", "rivers", "gardens"]}
_VERBS = {"s": ["runs", "sees", "likes", "finds", "helps", "follows", "sings", "waits"],
          "p": ["run", "see", "like", "find", "help", "follow", "sing", "wait"]}
_ADJECTIVES = ["old", "small", "quiet", "green", "happy", "tired", "bright", "lazy"]
_ADVERBS = ["today", "slowly", "again", "at night", "in the rain", "twice"]


def _phrase(rng: random.Random, depth: int) -> tuple[str, str]:
    """A noun phrase and its number ("s" or "p")."""
    number = rng.choice("sp")
    words = ["the"]
    if rng.random() < 0.4:
        words.append(rng.choice(_ADJECTIVES))
    words.append(rng.choice(_NOUNS[number]))
    if depth < 2 and rng.random() < 0.3:
        inner, inner_number = _phrase(rng, depth + 1)
        words += ["that", inner, rng.choice(_VERBS[inner_number])]
    if depth < 2 and rng.random() < 0.1:
        inner, _ = _phrase(rng, depth + 1)
        words += ["(", "with", inner, ")"]
    return " ".join(words), number


def grammar_text(seed: int, *, chars: int = 200_000) -> str:
    """Sentences from the grammar above until ``chars`` characters are written."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < chars:
        subject, number = _phrase(rng, 0)
        sentence = f"{subject} {rng.choice(_VERBS[number])}"
        if rng.random() < 0.5:
            sentence += " " + _phrase(rng, 1)[0]
        if rng.random() < 0.3:
            sentence += " " + rng.choice(_ADVERBS)
        parts.append(sentence + ". ")
        total += len(sentence) + 2
    return "".join(parts)[:chars]


def char_lm(seed: int, *, seq_len: int = 64, chars: int = 200_000,
            val_fraction: float = 0.1, test_fraction: float = 0.1) -> Dataset:
    """Next-character prediction on generated text, cut into windows of ``seq_len + 1``."""
    text = grammar_text(seed, chars=chars).encode("ascii")
    alphabet = sorted(set(text))
    table = torch.zeros(256, dtype=torch.long)
    table[torch.tensor(alphabet)] = torch.arange(len(alphabet))
    ids = table[torch.frombuffer(bytearray(text), dtype=torch.uint8).long()]
    count = (len(ids) - 1) // seq_len
    x = ids[: count * seq_len].view(count, seq_len)
    y = ids[1 : count * seq_len + 1].view(count, seq_len)
    val, test = max(1, int(len(x) * val_fraction)), max(1, int(len(x) * test_fraction))
    counts = torch.bincount(ids, minlength=len(alphabet)).float()
    return Dataset(*_split(x, y, val, test), vocab=len(alphabet),
                   chance=float(counts.max() / counts.sum()))  # fmt: skip


GENERATORS: dict[str, Callable[..., Dataset]] = {
    "mqar": mqar,
    "selective_copy": selective_copy,
    "digits": digits,
    "char_lm": char_lm,
}


def make(name: str, seed: int, params: dict[str, Any]) -> Dataset:
    """The dataset ``name`` drawn from ``seed`` with the task's ``[data]`` parameters."""
    try:
        generator = GENERATORS[name]
    except KeyError:
        raise ValueError(f"unknown data generator {name!r}; the shipped ones are: "
                         f"{', '.join(sorted(GENERATORS))}") from None
    return generator(seed, **params)
