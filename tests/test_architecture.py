"""Import rules between the packages (../shared/ARCHITECTURE.md), checked on the source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN: dict[str, set[str]] = {
    "matching": {"marketplace", "schemas", "fastapi", "sqlmodel", "sqlalchemy", "starlette"},
    "schemas": {"marketplace", "matching", "fastapi"},
    "migrations": {"matching", "schemas"},
}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _faiss_importers() -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for package in ("matching", "marketplace", "schemas")
        for path in (ROOT / package).rglob("*.py")
        if "faiss" in _imported_roots(path)
    }


class TestImportRules:
    @pytest.mark.parametrize("package", sorted(FORBIDDEN))
    def test_package_imports_only_what_it_may(self, package: str) -> None:
        violations = {
            f"{path.relative_to(ROOT)} imports {sorted(_imported_roots(path) & FORBIDDEN[package])}"
            for path in (ROOT / package).rglob("*.py")
            if _imported_roots(path) & FORBIDDEN[package]
        }
        assert violations == set()

    def test_migrations_use_only_the_models_of_marketplace(self) -> None:
        for path in (ROOT / "migrations").rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            modules = {
                node.module
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module
            }
            assert {m for m in modules if m.startswith("marketplace")} <= {"marketplace.models"}

    def test_only_the_index_module_imports_faiss(self) -> None:
        assert _faiss_importers() <= {"matching/index.py"}

    def test_routers_do_not_query_the_database(self) -> None:
        offenders = {
            str(path.relative_to(ROOT))
            for path in (ROOT / "marketplace" / "api").rglob("*.py")
            if {"sqlmodel", "sqlalchemy"} & _imported_roots(path)
        }
        assert offenders == set()
