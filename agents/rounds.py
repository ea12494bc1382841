"""The loop of an agent that runs for good on the gateway host (the spend watcher, the health agent): one
round, then a pause, then the document the program rewrote on the last `up` read again before the next."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict


def forever(run_once: Callable[[], Any], every: float, document: Path, replace: Callable[[Dict[str, Any]], None],
            name: str, round_word: str = "round") -> None:
    """Run ``run_once`` every ``every`` seconds; a round that raises is reported and the next one runs. Before
    each round after the first, ``replace`` is handed the document at ``document`` (kept as it was when it
    cannot be read)."""
    while True:
        try:
            run_once()
        except Exception as err:  # noqa: BLE001 - a long-running agent reports a failed round and runs again
            print(f"{name}: this {round_word} failed ({type(err).__name__}: {err}); again in {every:g} s", flush=True)
        time.sleep(every)
        try:
            replace(json.loads(Path(document).read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            print(f"{name}: keeping the last document: {err}", flush=True)
