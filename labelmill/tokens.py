"""The one token estimator: a cheap upper-bound-ish count of tokens from characters.

Budget reservations, dry-run cost models and the cascade's admission check all use it, so they
agree on what a document costs before a tokenizer has seen it. ``CHARS_PER_TOKEN`` = 3 errs on
the high side for English BPE vocabularies (about 4 characters per token), which is what a hard
budget wants: an estimate that is rarely below the real count.
"""

from __future__ import annotations

import numpy as np

CHARS_PER_TOKEN = 3


def estimate_tokens(chars: int) -> int:
    """Tokens for a text of ``chars`` characters: ``ceil(chars / 3)``.

    Example:
        >>> estimate_tokens(0), estimate_tokens(1), estimate_tokens(9), estimate_tokens(10)
        (0, 1, 3, 4)
    """
    return -(-int(chars) // CHARS_PER_TOKEN)


def estimate_tokens_array(chars: np.ndarray) -> np.ndarray:
    """Vectorised :func:`estimate_tokens`: ``chars: (N,) int -> (N,) int64``."""
    chars = np.asarray(chars, dtype=np.int64)
    return -(-chars // CHARS_PER_TOKEN)
