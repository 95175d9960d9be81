"""pyproject.toml declares what the bot imports, and only tests' needs go to the `test` extra.

A package that arrives only as another package's dependency (httpx2 through
pagerduty) disappears the day that package changes its own; one declared but
only used by tests (httpx) weighs on every deployment.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]) for req in requirements}


def _project() -> dict[str, object]:
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    assert isinstance(project, dict)
    return project


def _imported_top_level_modules(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        # `if TYPE_CHECKING:` imports never run: their stubs come with the test
        # extra (mypy runs in CI, and fails without them).
        type_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def test_every_third_party_module_the_bot_imports_is_a_declared_dependency() -> None:
    project = _project()
    dependencies = project["dependencies"]
    assert isinstance(dependencies, list)
    declared = _requirement_names(dependencies)
    distributions = packages_distributions()
    imported = _imported_top_level_modules(REPO_ROOT / "bot")
    undeclared = []
    for module, where in imported.items():
        if module == "bot" or module in sys.stdlib_module_names or module == "__future__":
            continue
        providers = {_normalise(d) for d in distributions.get(module, [])}
        assert providers, f"{module} (imported in {where}) is not installed"
        if not providers & declared:
            undeclared.append(f"{module} ({where.relative_to(REPO_ROOT)}) from {providers}")
    assert undeclared == []
    # The two the packaging defect was about.
    assert {"httpx2", "requests", "urllib3", "aiohttp"} <= declared


def test_test_only_packages_stay_in_the_test_extra() -> None:
    project = _project()
    dependencies = project["dependencies"]
    extras = project["optional-dependencies"]
    assert isinstance(dependencies, list) and isinstance(extras, dict)
    runtime = _requirement_names(dependencies)
    test_extra = _requirement_names(extras["test"])
    imported_by_bot = set(_imported_top_level_modules(REPO_ROOT / "bot"))
    for package in ("httpx", "pytest", "hypothesis", "aiosmtpd"):
        assert package not in runtime, f"{package} is only used by tests and bench/"
        assert package in test_extra
        assert package not in imported_by_bot
