"""Nothing from the network is ever unpickled or evaluated: no such call anywhere in the package."""

from __future__ import annotations

import ast
from pathlib import Path

import autopyfactory

PACKAGE = Path(autopyfactory.__file__).parent
FORBIDDEN_MODULE_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
    ("cPickle", "loads"), ("marshal", "loads"), ("marshal", "load"),
    ("shelve", "open"), ("dill", "loads"), ("jsonpickle", "decode"),
}
FORBIDDEN_BUILTINS = {"eval", "exec"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def offences(tree: ast.AST, path: Path) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = getattr(node, "module", None) or ""
            if "pickle" in names or module == "pickle" or "marshal" in names:
                found.append(f"{path}:{node.lineno}: imports pickle/marshal")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
            found.append(f"{path}:{node.lineno}: calls {func.id}()")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            pair = (func.value.id, func.attr)
            if pair in FORBIDDEN_MODULE_CALLS:
                found.append(f"{path}:{node.lineno}: calls {pair[0]}.{pair[1]}()")
            if pair == ("yaml", "load"):
                loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                name = getattr(loader, "attr", None) or getattr(loader, "id", None)
                if name not in SAFE_YAML_LOADERS:
                    found.append(f"{path}:{node.lineno}: yaml.load without a safe Loader")
    return found


def test_no_unpickling_or_eval_in_the_package():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        problems += offences(ast.parse(path.read_text(), str(path)), path.relative_to(PACKAGE.parent))
    assert problems == []


def test_the_check_itself_catches_offences():
    code = "import pickle\nx = pickle.loads(b)\ny = eval(s)\nimport yaml\nz = yaml.load(t)\n"
    found = offences(ast.parse(code), Path("bad.py"))
    assert len(found) == 4
