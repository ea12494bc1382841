"""Workload kinds live in their own package: one class per kind, and no branch on a kind anywhere else."""
import tests
import ast
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from core.kinds import KINDS, WorkloadKind
from core.workloads import KINDS_IN_ORDER, WorkloadSpec
from core.workloads.base import kind_classes

ROOT = tests.ROOT
CODE = ("core", "components", "providers", "agents", "policy", "scripts", "sandbox", "__main__.py")
HOME = (ROOT / "core" / "workloads", ROOT / "core" / "kinds.py")


def kind_branches(path: Path):
    """Where ``path`` names one workload kind (``WorkloadKind.X``) or compares a ``.kind`` with ``is``/``==``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "WorkloadKind"
                and node.attr.isupper()):
            yield node.lineno, f"WorkloadKind.{node.attr}"
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq, ast.In))
                                                 for op in node.ops):
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Attribute) and s.attr == "kind" and "WorkloadKind" in ast.unparse(node)
                   for s in sides):
                yield node.lineno, ast.unparse(node)


def test_no_code_outside_the_kinds_package_branches_on_a_kind():
    found = []
    for name in CODE:
        for path in ([ROOT / name] if name.endswith(".py") else sorted((ROOT / name).rglob("*.py"))):
            if any(path == home or home in path.parents for home in HOME):
                continue
            found += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in kind_branches(path)]
    assert found == []


def test_the_check_sees_a_branch_planted_outside(tmp_path):
    planted = tmp_path / "renderer.py"
    planted.write_text("from core.kinds import WorkloadKind\n\ndef env(w):\n"
                       "    return {'X': '1'} if w.kind is WorkloadKind.VLLM else {}\n")
    assert sorted(what for _, what in kind_branches(planted)) == ["WorkloadKind.VLLM", "w.kind is WorkloadKind.VLLM"]


def test_every_kind_of_the_table_has_its_class_and_each_class_its_row():
    assert {cls.model_fields["kind"].default for cls in KINDS_IN_ORDER} == set(WorkloadKind) == set(KINDS)
    assert set(kind_classes()) == {k.value for k in WorkloadKind}


@pytest.mark.parametrize("kind", list(WorkloadKind))
def test_a_workload_is_parsed_into_the_class_of_its_kind(kind):
    raw = {"kind": kind.value, "model": "Qwen/Qwen2.5-7B-Instruct", "gguf": "q.gguf", "image": "example/own:1",
           "port": 9000}
    cls = kind_classes()[kind.value]
    raw = {k: v for k, v in raw.items() if k in cls.model_fields}
    assert type(TypeAdapter(WorkloadSpec).validate_python(raw)) is cls


def test_a_field_of_another_kind_is_named_as_such():
    with pytest.raises(ValidationError, match="models does not apply to vllm"):
        TypeAdapter(WorkloadSpec).validate_python({"kind": "vllm", "model": "Qwen/Qwen2.5-7B-Instruct",
                                                   "models": ["qwen3:8b"]})
