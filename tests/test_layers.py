"""The package's layers (DESIGN.md, "Layout"): every import points down, none forms a cycle.

leaves -> data sources -> the contract and the two loops -> models -> wrappers -> face.
No module below the models imports a model, and "is this a dask collection" is asked
in one place of base.py.
"""

import ast
import pathlib

import skgenerative

PACKAGE = pathlib.Path(skgenerative.__file__).parent
LAYERS = [
    {"_torch", "_progress", "_png", "_explain", "_marginals", "_kernels", "distributions"},
    {"_schema", "_level_groups", "nn", "flows"},
    {"_sources"},
    {"base", "_em", "_training"},
    {"mixture", "ppca", "rbm", "vae", "flow_vae"},
    {"impute", "outlier"},
    {"__init__", "__main__"},
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}
MODELS = LAYERS[4]
# within a layer: the training loop builds on the contract, FlowVAE on the VAE, flows on
# nn, the demo on the public names
SIDEWAYS = {("_training", "base"), ("flow_vae", "vae"), ("flows", "nn"), ("__main__", "__init__")}


def _imports(path: pathlib.Path) -> set:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:  # "from . import name": a module, or a public name of the package
                out.update(a.name if (PACKAGE / f"{a.name}.py").exists() else "__init__" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("skgenerative"):
            parts = node.module.split(".")
            out.add(parts[1] if len(parts) > 1 else "__init__")
    return out - {path.stem}


def _graph() -> dict:
    return {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}


def test_every_module_has_a_layer_and_imports_only_below_it():
    graph = _graph()
    assert set(graph) <= set(LAYER), set(graph) - set(LAYER)
    wrong = [(a, b) for a, deps in graph.items() for b in deps
             if LAYER[b] > LAYER[a] or (LAYER[b] == LAYER[a] and (a, b) not in SIDEWAYS)]
    assert not wrong, wrong
    below_models = [a for a, deps in graph.items() if LAYER[a] < LAYER["mixture"] and deps & MODELS]
    assert not below_models


def test_no_cycle():
    graph, done = _graph(), set()

    def visit(module, path):
        assert module not in path, " -> ".join(path + [module])
        if module not in done:
            for dep in graph.get(module, ()):
                visit(dep, path + [module])
            done.add(module)

    for module in graph:
        visit(module, [])


def test_one_dask_dispatch_point():
    """Methods never ask whether X is a dask collection; base.on_blocks does, once."""
    text = {path.stem: path.read_text() for path in PACKAGE.glob("*.py")}
    asking = {name: body.count("is_dask_collection(") for name, body in text.items() if name != "_sources"}
    assert {name: n for name, n in asking.items() if n} == {"base": 1}
