"""The layout is the architecture: each package imports only the layers below it, and the stages
meet through asset keys, never by importing each other."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "churn_platform"
STAGES = {"crm", "logs", "features", "ml", "backups", "online", "inference"}
SHARED = {"settings", "storage", "engines", "orchestration", "contracts"}
# What each part of the package may import from the rest of it (itself always).
ALLOWED = {
    "settings": set(),
    "storage": {"settings"},
    "engines": {"settings", "storage"},
    "orchestration": {"settings"},
    "contracts": {"settings", "storage"},
    **dict.fromkeys(STAGES, SHARED),
    "synthetic": {"storage", "crm", "logs"},
    "alerts": SHARED | {"crm"},
    # The scoring service: the online store's reads, the batch path's predict function, the CRM's
    # client, webhook signatures and ticket sentiment, and the inference log's writer.
    "serving": SHARED | {"online", "ml", "crm", "inference"},
    # Metrics: the instance, MLflow and the warehouse through the shared layers; no stage.
    "observability": {"settings", "storage", "orchestration"},
}
TOP = {"resources", "definitions", "cli", "__init__"}  # on top: may import anything


def internal_imports(path: Path) -> set[str]:
    """The churn_platform subpackages a module imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "churn_platform" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_part_imports_only_the_layers_below_it():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if part in TOP:
            continue
        assert part in ALLOWED, (
            f"{path}: new top-level part {part!r}; add it to the layers here and in the README"
        )
        for imported in internal_imports(path) - {part}:
            if imported not in ALLOWED[part]:
                problems.append(f"{path.relative_to(PACKAGE.parent)} imports churn_platform.{imported}")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_lazy_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from churn_platform.ml.training import x\n    import churn_platform.crm\n"
    )
    assert internal_imports(module) == {"ml", "crm"}


def test_every_package_says_what_it_holds_and_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, f"{init} has no docstring saying what it may import"
