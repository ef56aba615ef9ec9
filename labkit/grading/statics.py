"""What a graded notebook may not write: a check of its cells' source, before anything is scored.

The sandbox keeps a notebook from touching anything but its own folder, and the provenance
check (``labkit.models.provenance``) sees which of labkit's functions an answer calls. What a
Python process cannot fully watch in itself is checked here, on the source: switching the
profiling hook off, running code the hook cannot follow (threads, ``exec``, ``compile``,
``importlib``), reading source to recompile it, changing labkit's, the grader's or any imported
module's attributes, magics and shell commands, and building a network from labkit's reference
networks or blocks, or from a network's config or file.

Only the cells a student wrote or changed are checked: a cell whose source is exactly one of
the distributed student version's passes as it is (the setup cell installs labkit; the lab's
own cells build labkit's networks to show them).

    problems = check_notebook("submissions/ada/02_alexnet.ipynb", "dist/autograder/02_alexnet")
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

STUDENT_VERSION = "student.ipynb"

#: modules an answer may not import: they run code the profiling hook cannot follow, read or
#: rebuild code, or reach the grader
MODULES = frozenset({
    "importlib", "imp", "threading", "_thread", "multiprocessing", "concurrent", "subprocess", "ctypes", "cffi",
    "inspect", "gc", "marshal", "pickle", "dill", "cloudpickle", "types", "code", "codeop", "runpy", "builtins",
    "signal", "atexit", "faulthandler", "sysconfig", "site", "otter", "dis", "pty", "socket", "asyncio",
    "labkit.grading", "labkit.sandbox", "labkit.models.provenance"})
#: builtins that run or reach code by name
NAMES = frozenset({"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint", "setattr",
                   "delattr", "__builtins__", "__loader__", "__spec__", "get_ipython"})
#: attributes that switch the hook off, reach frames, code or modules, or rebuild a network
ATTRIBUTES = frozenset({
    "setprofile", "settrace", "_getframe", "f_globals", "f_locals", "f_back", "f_code", "gi_frame", "tb_frame",
    "co_code", "meta_path", "path_hooks", "addaudithook", "modules", "__dict__", "__code__", "__globals__",
    "__builtins__", "__subclasses__", "__mro__", "__bases__", "__closure__", "__func__", "__wrapped__",
    "__getattribute__", "__import__", "__loader__", "__spec__", "getsource", "clone_model", "from_config",
    "model_from_json", "model_from_config", "load_model", "deserialize_keras_object", "deserialize",
    "run_line_magic", "run_cell_magic", "system"})
#: what an answer may use of ``labkit.models``: layers and counting, not networks or blocks
LABKIT_MODELS_ALLOWED = frozenset({"layers", "count_trainable", "count_parameters", "shapes_only", "available",
                                   "LocalResponseNormalization", "paper_input_shape", "min_input_size"})
#: magics that change nothing but the display
MAGICS = frozenset({"matplotlib", "time", "timeit"})


def _reference_modules() -> set[str]:
    import pkgutil

    import labkit.models

    return {info.name for info in pkgutil.iter_modules(labkit.models.__path__)}


def _python(source: str) -> str:
    """A cell's source as Python (IPython turns ``%magic`` and ``!shell`` into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _root(node):
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self, modules: dict):
        self.problems: list[tuple[int, str]] = []
        self.modules = modules   # name -> the module (or module attribute) it is bound to

    def refuse(self, node, what: str) -> None:
        self.problems.append((getattr(node, "lineno", 0), what))

    def _module_of(self, node) -> str | None:
        dotted = _dotted(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        if head not in self.modules:
            return None
        return f"{self.modules[head]}.{rest}" if rest else self.modules[head]

    def _check_module(self, node, module: str) -> None:
        if any(module == m or module.startswith(m + ".") for m in MODULES):
            self.refuse(node, f"imports {module}")
        if module.startswith("labkit.models."):
            part, *rest = module.split(".")[2:]
            # a module of labkit.models may be named, and its tables read (googlenet.INCEPTION):
            # its functions and classes (networks, blocks) may not
            table = rest and rest[0].isupper()
            if part not in LABKIT_MODELS_ALLOWED and not table and (rest or part not in _reference_modules()):
                self.refuse(node, f"uses labkit's reference {module}")

    def visit_Import(self, node):
        for alias in node.names:
            self._check_module(node, alias.name)
            bound = alias.asname or alias.name.split(".")[0]
            self.modules[bound] = alias.name if alias.asname else alias.name.split(".")[0]

    def visit_ImportFrom(self, node):
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            full = f"{module}.{alias.name}"
            self._check_module(node, full if alias.name != "*" else module)
            self.modules[alias.asname or alias.name] = full

    def visit_Name(self, node):
        if node.id in NAMES:
            self.refuse(node, f"uses {node.id}")

    def visit_Attribute(self, node):
        if node.attr in ATTRIBUTES:
            self.refuse(node, f"uses .{node.attr}")
        module = self._module_of(node)
        if module is not None:
            self._check_module(node, module)
        self.generic_visit(node)

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id == "getattr" and (
                len(node.args) < 2 or not isinstance(node.args[1], ast.Constant)):
            self.refuse(node, "uses getattr with a computed name")
        self.generic_visit(node)

    def _target(self, target, node):
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._target(element, node)
        elif isinstance(target, (ast.Attribute, ast.Subscript)) and _root(target) in self.modules:
            self.refuse(node, f"changes {_dotted(target) or _root(target) + '[...]'}, part of an imported module")
        elif isinstance(target, ast.Name) and isinstance(getattr(node, "value", None), (ast.Attribute, ast.Name)):
            module = self._module_of(node.value)
            if module is not None:   # an alias of a module or its attribute: changing it changes the module
                self.modules[target.id] = module

    def visit_Assign(self, node):
        for target in node.targets:
            self._target(target, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._target(node.target, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._target(node.target, node)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            self._target(target, node)
        self.generic_visit(node)


def _magics(python: str) -> str:
    """Allowed display magics removed from the transformed source."""
    lines = []
    for line in python.splitlines():
        stripped = line.strip()
        if stripped.startswith("get_ipython().run_line_magic(") and stripped.split("'")[1:2] and \
                stripped.split("'")[1] in MAGICS:
            continue
        lines.append(line)
    return "\n".join(lines)


def check_source(cells: list[str]) -> list[str]:
    """Problems in ``cells`` (sources, in order, as one notebook), each "cell N, line L: ..."."""
    problems = []
    modules: dict = {}
    for number, source in cells:
        try:
            tree = ast.parse(_magics(_python(source)))
        except SyntaxError:
            continue   # it raises when run: that costs the questions it answers, nothing more
        checker = _Checker(modules)
        checker.visit(tree)
        problems += [f"cell {number}, line {line}: {what}" for line, what in checker.problems]
    return problems


def check_notebook(notebook, autograder) -> list[str]:
    """What in ``notebook``'s own cells grading does not allow, each as "uses X in cell N, line L"
    (empty when nothing). Cells equal to one of the student version's are not checked."""
    template = Path(autograder) / STUDENT_VERSION
    given = set()
    if template.is_file():
        given = {"".join(c.get("source", "")) for c in json.loads(template.read_text())["cells"]
                 if c.get("cell_type") == "code"}
    try:
        cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return ["cannot be read as a notebook"]
    own = [(i, "".join(c.get("source", ""))) for i, c in enumerate(cells)
           if isinstance(c, dict) and c.get("cell_type") == "code" and "".join(c.get("source", "")) not in given]
    return [f"{problem.split(': ', 1)[1]} ({problem.split(': ', 1)[0]}), which grading does not allow"
            for problem in check_source(own)]
