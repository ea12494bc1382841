"""The stack key reference (docs/keys.md) is what `python -m scripts.keys` prints from the spec's models:
every key with its type, default, unit and a line of meaning."""
import re
import subprocess
import sys

from core.config import PROJECT_ROOT
from core.workloads import KINDS_IN_ORDER
from scripts import keys


def test_the_committed_reference_is_what_the_command_prints():
    printed = subprocess.run([sys.executable, "-m", "scripts.keys"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, check=True).stdout
    committed = (PROJECT_ROOT / "docs" / "keys.md").read_text(encoding="utf-8")
    assert committed == printed, "docs/keys.md is stale: run `.venv/bin/python -m scripts.keys > docs/keys.md`"


def test_every_key_has_a_line_of_meaning():
    rows = [line for line in keys.reference().splitlines() if re.match(r"\| `[a-z_]+` \|", line)]
    assert len(rows) > 150
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    assert all(len(c) == 5 for c in cells)
    empty = [key for key, _type, _default, _unit, meaning in cells if not meaning]
    assert not empty, f"keys without a docstring: {empty}"


def test_each_kind_lists_its_own_keys_and_not_the_ones_it_refuses():
    text = keys.reference()
    for cls in KINDS_IN_ORDER:
        kind = cls.model_fields["kind"].default.value
        block = text.split(f"`{kind}`\n", 1)[1].split("\n##", 1)[0]
        listed = set(re.findall(r"^\| `([a-z_]+)` \|", block, re.M))
        assert listed == set(cls.model_fields) - set(cls.belongs_elsewhere), kind
    litellm = text.split("`litellm`\n", 1)[1].split("\n##", 1)[0]
    assert "Refused here: `port` (LiteLLM listens on gpu-estate:gateway.port)" in litellm
