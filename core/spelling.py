"""The nearest known name to a misspelt one: what every refusal of an unknown key, kind or name suggests."""
from __future__ import annotations

import difflib
from typing import Iterable, Optional, Sequence


def nearest(word: str, known: Iterable[str]) -> Optional[str]:
    """The known word ``word`` is most likely a misspelling of, if any is close."""
    known = list(known)
    squashed = {k.replace("-", "").replace("_", "").lower(): k for k in known}
    same = squashed.get(word.replace("-", "").replace("_", "").lower())
    if same is not None:
        return same
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key(key: str, known: Sequence[str]) -> str:
    """The message for ``key`` where only ``known`` keys exist: the nearest one first, then them all."""
    near = nearest(key, known)
    hint = f"did you mean `{near}`? " if near else ""
    return f"unknown key `{key}`; {hint}known here: {', '.join(known)}"
