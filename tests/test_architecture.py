"""The dependency rules of DESIGN.md, held by a test: arrows never point back."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "lmforge"


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def files(sub: str):
    return sorted((PKG / sub).rglob("*.py")) if (PKG / sub).is_dir() else [PKG / f"{sub}.py"]


# package part -> prefixes it must never import
FORBIDDEN = {
    "nn": ("lmforge.models", "lmforge.train", "lmforge.generate", "lmforge.serve", "lmforge.cli", "lmforge.tokenizers", "lmforge.data", "lmforge.kernels"),
    "tokenizers": ("torch", "lmforge.nn", "lmforge.models", "lmforge.train", "lmforge.generate", "lmforge.serve", "lmforge.cli"),
    "config": ("torch", "lmforge.nn", "lmforge.models"),
    "generate": ("lmforge.tokenizers", "lmforge.models.gpt", "lmforge.serve", "lmforge.cli", "lmforge.train"),
    "train": ("lmforge.models.gpt", "lmforge.serve", "lmforge.cli", "lmforge.generate"),
    "models": ("lmforge.train", "lmforge.serve", "lmforge.cli", "lmforge.generate"),
}


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_dependency_direction(part):
    bad = []
    for f in files(part):
        for mod in imports_of(f):
            if any(mod == p or mod.startswith(p + ".") for p in FORBIDDEN[part]):
                bad.append(f"{f.relative_to(PKG)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_families_do_not_import_each_other():
    families = {f.stem for f in (PKG / "models").glob("*.py")} - {"__init__", "outputs"}
    bad = [f"{f.stem} imports {m}" for f in (PKG / "models").glob("*.py") for m in imports_of(f)
           if m.startswith("lmforge.models.") and m.split(".")[2] in families and m.split(".")[2] != f.stem]
    assert not bad, bad


def test_nothing_imports_the_cli_or_serve():
    bad = [f"{f.relative_to(PKG)} imports {m}" for f in PKG.rglob("*.py")
           if not f.is_relative_to(PKG / "cli") and not f.is_relative_to(PKG / "serve") and f.name != "__main__.py"
           for m in imports_of(f) if m.startswith(("lmforge.cli", "lmforge.serve"))]
    assert not bad, bad


def test_import_lmforge_does_not_import_torch():
    code = "import sys, lmforge, lmforge.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
