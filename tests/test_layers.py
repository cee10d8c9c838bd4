"""The import layers: the library from the bottom up, the embedded world and the distillation
commands above it; no import goes down-to-up and no module imports itself through others.

Every ``import`` statement counts, also those inside functions (they run all the same)."""
import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("densepose_ext", "synthesis", "distill", "fitting")
#: rank of each package (a module may import modules of its own or a lower rank)
LAYERS = {
    "densepose_ext.utils": 0, "densepose_ext.config": 0, "densepose_ext.model_zoo": 0,
    "densepose_ext.body": 1,
    "densepose_ext.structures": 2,
    "densepose_ext.pose3d": 3,
    "densepose_ext.data": 4,
    "densepose_ext.modeling": 5,
    "densepose_ext.evaluation": 6, "densepose_ext.vis": 6,
    "densepose_ext.engine": 7,
    "densepose_ext": 8,  # the package root: the public API
    "synthesis": 9,  # the embedded world and the built-in datasets
    "distill": 10,  # commands that make training data with models
    "fitting": 11,  # the model-fitting baseline: keypoints -> fitted body -> IUV
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    """The entry of :data:`LAYERS` a module belongs to (longest matching prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module}: in no layer; add its package to LAYERS")


def project_imports() -> List[Tuple[str, str, int]]:
    """(importing module, imported module, line) for every import of a project module."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = _module_name(path)
            is_package = path.name == "__init__.py"
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        anchor = module.split(".")[: len(module.split(".")) - node.level
                                                   + (1 if is_package else 0)]
                        base = ".".join(anchor + ([base] if base else []))
                    # ``from pkg import name`` imports pkg.name when that is a module
                    targets = [f"{base}.{a.name}" if (REPO / Path(*f"{base}.{a.name}".split(".")))
                               .with_suffix(".py").is_file() or (REPO / Path(*base.split("."))
                                                                 / a.name).is_dir()
                               else base for a in node.names]
                else:
                    continue
                found += [(module, t, node.lineno) for t in targets
                          if t.split(".")[0] in PACKAGES]
    return found


def test_no_import_goes_down_to_up():
    wrong = [f"{src} (line {line}) imports {dst}"
             for src, dst, line in project_imports()
             if LAYERS[_layer(dst)] > LAYERS[_layer(src)]]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    graph: Dict[str, Set[str]] = {}
    for src, dst, _ in project_imports():
        # a package's __init__ importing its own submodules is how it exports them
        if src != dst and not dst.startswith(src + "."):
            graph.setdefault(src, set()).add(dst)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
