"""The dependency rules of DESIGN.md, held by a test: arrows never point back, and no import cycle.

Imports are read from the source (absolute and relative, module level and inside functions): a lazy
import is still a dependency, only a cheaper one."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "lmforge"
FAMILIES = sorted(p.name for p in (PKG / "models").iterdir() if (p / "__init__.py").is_file())


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(f): f for f in PKG.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(source: str, own: str, is_package: bool = False) -> set[str]:
    """Every module the source of module `own` imports, relative imports resolved; `from a import b` also
    yields a.b when b is a module of the package."""
    package = own if is_package else own.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES}
    return out


def files(sub: str):
    return sorted((PKG / sub).rglob("*.py")) if (PKG / sub).is_dir() else [PKG / f"{sub}.py"]


def test_relative_imports_are_read():
    """The reader itself: a relative import is resolved against the importing module's package."""
    assert "lmforge.models.protocol" in imports_of(PKG / "models" / "gpt" / "model.py")
    code = "from ..outputs import ModelOutput\nfrom . import config\nfrom .hf import MODEL_TYPES\n"
    assert imports_in(code, "lmforge.models.gpt.model") == {
        "lmforge.models.outputs", "lmforge.models.gpt", "lmforge.models.gpt.config", "lmforge.models.gpt.hf"}
    assert imports_in("from .. import io\n", "lmforge.tokenizers", is_package=True) == {"lmforge", "lmforge.io"}


_FAMILY_PKGS = tuple(f"lmforge.models.{f}" for f in FAMILIES)
# package part -> prefixes it must never import
FORBIDDEN = {
    "config": ("torch", "lmforge.nn", "lmforge.models", "lmforge.tokenizers", "lmforge.train", "lmforge.data",
               "lmforge.generate", "lmforge.serve", "lmforge.cli", "lmforge.kernels"),
    "nn": ("lmforge.models", "lmforge.train", "lmforge.generate", "lmforge.serve", "lmforge.cli", "lmforge.tokenizers",
           "lmforge.data", "lmforge.kernels"),
    # the CPU fast paths know layers (nn), never what runs them
    "kernels": ("lmforge.models", "lmforge.train", "lmforge.generate", "lmforge.serve", "lmforge.cli",
                "lmforge.tokenizers", "lmforge.data"),
    "tokenizers": ("torch", "lmforge.nn", "lmforge.models", "lmforge.train", "lmforge.generate", "lmforge.serve",
                   "lmforge.cli", "lmforge.data"),
    "data": ("lmforge.models", "lmforge.train", "lmforge.generate", "lmforge.serve", "lmforge.cli"),
    "objectives": ("lmforge.models", "lmforge.train", "lmforge.generate", "lmforge.serve", "lmforge.cli"),
    "models": ("lmforge.train", "lmforge.serve", "lmforge.cli", "lmforge.generate", "lmforge.tokenizers",
               "lmforge.data"),
    # generation works on token ids through the decoding protocol: no tokenizer, no family
    "generate": ("lmforge.tokenizers", "lmforge.serve", "lmforge.cli", "lmforge.train", "lmforge.data") + _FAMILY_PKGS,
    # the trainer and the recipes know families only through the registry (lmforge.models)
    "train": ("lmforge.serve", "lmforge.cli", "lmforge.generate") + _FAMILY_PKGS,
}


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_dependency_direction(part):
    bad = []
    for f in files(part):
        for mod in imports_of(f):
            if any(mod == p or mod.startswith(p + ".") for p in FORBIDDEN[part]):
                bad.append(f"{f.relative_to(PKG)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_families_are_packages_and_do_not_import_each_other():
    assert not [p.name for p in (PKG / "models").glob("*.py") if p.stem not in ("__init__", "outputs", "protocol")], \
        "a family lives in its own package: models/<family>/{config,model,hf}.py"
    bad = []
    for fam in FAMILIES:
        for f in (PKG / "models" / fam).rglob("*.py"):
            bad += [f"{f.relative_to(PKG)} imports {m}" for m in imports_of(f)
                    if m.startswith("lmforge.models.") and m.split(".")[2] in FAMILIES and m.split(".")[2] != fam]
        config = PKG / "models" / fam / "config.py"
        assert config.is_file(), f"models/{fam} has no config.py"
        bad += [f"models/{fam}/config.py imports {m}" for m in imports_of(config)
                if m == "torch" or m.startswith(("torch.", "lmforge.nn"))]
    assert not bad, bad


def test_nothing_imports_the_cli_or_serve():
    bad = [f"{f.relative_to(PKG)} imports {m}" for f in PKG.rglob("*.py")
           if not f.is_relative_to(PKG / "cli") and not f.is_relative_to(PKG / "serve") and f.name != "__main__.py"
           for m in imports_of(f) if m.startswith(("lmforge.cli", "lmforge.serve"))]
    assert not bad, bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in a directed graph as [a, b, ..., a], or None. Example: {a: {b}, b: {a}} -> [a, b, a]."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    """Module A importing B while B (directly or through others) imports A is a cycle, lazy or not: it means
    neither can be read, tested or moved without the other."""
    graph = {}
    for name, f in MODULES.items():
        own = {m for m in imports_of(f) if m in MODULES and m != name}
        # `import lmforge.x.y` runs lmforge/x/__init__ first, but that is Python's doing, not a dependency
        graph[name] = own
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_import_lmforge_does_not_import_torch():
    code = "import sys, lmforge, lmforge.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
