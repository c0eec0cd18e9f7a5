"""No module imports a module of a later layer in the data flow (static: every import, top level or lazy)."""

from __future__ import annotations

import fnmatch
import pkgutil

import cpqs_bench
from cpqs_bench.code_version import direct_imports

# data → prompts → features → selectors → select → finetune → evaluate → stats/leaderboard → publish → reproduce → cli
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "io",
            "config",
            "provenance",
            "resources",
            "rundir",
            "models",
            "tiny",
            "code_version",
            "model_cache",
            "compute",
            "*.config",
            "__init__",
        ),
    ),
    ("data", ("data", "data.*")),
    ("prompts", ("prompts", "templates")),
    ("features", ("features",)),
    ("selectors", ("selectors", "selectors.*", "judge", "judge.*", "score")),
    # the selector contract kit checks selections too, and runs the validity tracks (which score through selectors)
    ("select", ("select", "testing", "validity", "validity.*")),
    ("finetune", ("finetune", "finetune.*")),
    ("evaluate", ("evaluate", "evaluate.*")),
    # diagnostics over scored/tokenised pools sit with the statistics: they read every lower layer
    # validity tracks score through the selectors and report with the statistics
    (
        "stats",
        (
            "stats",
            "leaderboard",
            "leaderboard_page",
            "compare",
            "contamination",
            "validity",
            "validity.*",
            "data.inspect",
        ),
    ),
    ("publish", ("publish", "publish.*")),
    ("reproduce", ("pipeline", "stages", "stages.*", "reproduce", "preflight")),
    ("cli", ("cli", "cli.*", "__main__")),
]


def layer_of(module: str) -> int:
    rel = module.removeprefix("cpqs_bench.") if module != "cpqs_bench" else "__init__"
    if rel == "cli" or rel.startswith("cli."):  # before the "*.config" section pattern: cli/config.py is a verb
        return len(LAYERS) - 1
    exact = [i for i, (_, patterns) in enumerate(LAYERS) if rel in patterns]  # an exact name wins over a glob
    if exact:
        return exact[0]
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(rel, pat) for pat in patterns):
            return i
    raise AssertionError(f"module {module} has no layer in tests/test_layers.py: add it where it belongs")


def all_modules() -> list[str]:
    return ["cpqs_bench"] + [m.name for m in pkgutil.walk_packages(cpqs_bench.__path__, "cpqs_bench.")]


def test_every_module_has_a_layer():
    for m in all_modules():
        layer_of(m)


def test_no_module_imports_a_later_layer():
    violations = []
    for m in all_modules():
        mine = layer_of(m)
        for dep in sorted(direct_imports(m, parents=False)):
            if layer_of(dep) > mine:
                violations.append(f"{m} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})")
    assert not violations, "layer violations:\n" + "\n".join(violations)


def test_the_walker_sees_lazy_imports(tmp_path):
    # the check can fail: a lazy import inside a function of a foundation module counts
    from cpqs_bench import code_version

    assert "cpqs_bench.models" in direct_imports("cpqs_bench.model_cache", parents=False)
    assert layer_of("cpqs_bench.cli.score") > layer_of("cpqs_bench.score")
    assert code_version.module_file("cpqs_bench.nonexistent") is None
