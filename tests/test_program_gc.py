"""The program runs Python's cycle collector less often than by default (providers/resource.py,
``collect_garbage_less_often``): at the default thresholds its full passes over the estate's ever
growing set of resources and outputs made the evaluation grow faster than the estate
(``benchmarks/bench_program.py`` prints the time per node for 10, 100 and 1000 nodes)."""
import gc
import json
import os
import subprocess
import sys
import textwrap

from core.config import PROJECT_ROOT
from providers.resource import GC_DEFAULT_ENV, GC_THRESHOLDS, collect_garbage_less_often

PROGRAM = textwrap.dedent("""
    import gc, json, sys
    sys.path.insert(0, ".")
    from tests.mocks import run_program, stack_config
    before = gc.get_threshold()
    config = stack_config("sandbox")
    config.pop("gpu-estate:gateway", None)
    config.pop("gpu-estate:spend", None)
    mocks = run_program(config, stack="sandbox")
    print(json.dumps({"before": before, "after": gc.get_threshold(),
                      "instances": len(mocks.of_type("pulumi-python:dynamic/gpu:Instance"))}))
""")


def run(env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k != GC_DEFAULT_ENV}
    env.update(env_extra, PYTHONPATH=str(PROJECT_ROOT))
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_program_sets_the_projects_thresholds_before_it_builds_the_estate():
    out = run({})
    assert tuple(out["before"]) == (700, 10, 10)  # Python's own, in a fresh interpreter
    assert tuple(out["after"]) == GC_THRESHOLDS
    assert out["instances"] >= 3  # the estate was built under them


def test_the_switch_keeps_pythons_thresholds():
    out = run({GC_DEFAULT_ENV: "1"})
    assert tuple(out["after"]) == tuple(out["before"]) == (700, 10, 10)


def test_the_thresholds_are_set_only_without_the_switch():
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert collect_garbage_less_often({GC_DEFAULT_ENV: "yes"}) is False
        assert gc.get_threshold() == (700, 10, 10)
        assert collect_garbage_less_often({}) is True
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*saved)
