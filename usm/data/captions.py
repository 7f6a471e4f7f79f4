"""Synthetic captions for the embedded shapes, tokenised by a fixed vocabulary: text conditioning
that needs no download.

    >>> from usm.data.captions import captions, caption_tokens
    >>> captions(2, size=16)
    ['a small purple ring at the top left', 'a large red triangle at the bottom right']
    >>> caption_tokens("shapes", 16, count=3).shape  # (images, tokens, d_context)
    (3, 8, 32)

Each caption says what the image shows: size, colour (the hue; "bright" or "dim" for the gray
variant), class and position, words of one fixed vocabulary (``VOCABULARY``). Tokens are the
caption's words, padded to ``TOKENS``, each replaced by a fixed vector (a seeded random table of
``D_CONTEXT`` dims), like precomputed text-encoder outputs. Trained with ``--cond text --context
captions`` on ``shapes`` or ``shapes-gray``: row i conditions image i.
"""

from __future__ import annotations

import numpy as np

from usm.data.shapes import CLASSES, DEFAULT_COUNT, VARIANTS, scenes

HUES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta")
VOCABULARY = ("<pad>", "a", "small", "large", "at", "the", "top", "bottom", "left", "right", "bright", "dim",
              *HUES, *CLASSES)
TOKENS, D_CONTEXT = 8, 32


def captions(count: int = DEFAULT_COUNT, seed: int = 0, size: int = 32, gray: bool = False) -> list[str]:
    scene = scenes(count, seed, size)
    out = []
    for i in range(count):
        big = "large" if scene["radius"][i] >= 0.28 * size else "small"
        if gray:  # the gray variant draws intensity, not hue
            colour = "bright" if scene["value"][i] >= 0.875 else "dim"  # the upper half of the shape's levels
        else:
            colour = HUES[int(scene["hue"][i] * len(HUES)) % len(HUES)]
        vertical = "top" if scene["cy"][i] < size / 2 else "bottom"
        horizontal = "left" if scene["cx"][i] < size / 2 else "right"
        out.append(f"a {big} {colour} {CLASSES[scene['label'][i]]} at the {vertical} {horizontal}")
    return out


def embedding_table(d_context: int = D_CONTEXT) -> np.ndarray:
    """The fixed word vectors: (vocabulary, d_context), unit norm, the padding word zero."""
    table = np.random.default_rng(1234).standard_normal((len(VOCABULARY), d_context)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    table[0] = 0
    return table


def tokenize(texts: list[str], d_context: int = D_CONTEXT) -> np.ndarray:
    index = {word: i for i, word in enumerate(VOCABULARY)}
    ids = np.zeros((len(texts), TOKENS), dtype=np.int64)
    for row, text in enumerate(texts):
        words = text.split()[:TOKENS]
        unknown = [w for w in words if w not in index]
        if unknown:
            raise ValueError(f"words outside the caption vocabulary: {unknown}")
        ids[row, :len(words)] = [index[w] for w in words]
    return embedding_table(d_context)[ids]


def caption_tokens(data: str, resolution: int, count: int = DEFAULT_COUNT, seed: int = 0) -> np.ndarray:
    """Context tokens (count, TOKENS, D_CONTEXT) of an embedded dataset's captions."""
    if data not in VARIANTS:
        raise ValueError(f"synthetic captions exist for the embedded datasets ({', '.join(VARIANTS)}), "
                         f"not {data!r}: give a .npy of precomputed tokens instead")
    return tokenize(captions(count, seed, resolution, VARIANTS[data]))
