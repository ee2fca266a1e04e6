"""The house rules of DESIGN.md, checked on the source (CPython only).

firmware/ is the portable core: it imports only what CPython and MicroPython both have,
and nothing from drivers/, board/, tools/ or tests/. drivers/ never imports board/ or
tools/. Nothing outside tests/ imports tests. firmware/ also avoids what MicroPython
does not do: dataclasses, typing, exception chaining, and (by house rule) the f-string
"=" debug specifier. The walrus operator is fine: MicroPython 1.27 compiles it
(tests/portable/test_compat.py proves it under tools/mpy_runner.mjs).

Inside firmware/ the rooms stack up: core/ imports only core/; ui/ imports core/ and
ui/; the domains (payments/, cards/, security/, retail/, reports/, ...) import core/,
ui/ and each other, never flows/ or terminal.py; flows/ imports all of those but never
terminal.py, which sits on top. No import circle anywhere in the project, counting the
imports written inside functions (a late import hides a circle, it does not remove it).

Each failure names file:line and the offending import or construct.
"""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# stdlib modules present in both CPython 3.11 and MicroPython 1.27 (the unix and
# webassembly ports), plus the core itself. micropython exists only on MicroPython
# and is imported behind try/except ImportError in firmware/core/compat.py.
PORTABLE_MODULES = frozenset((
    "sys", "os", "time", "select", "errno", "heapq", "struct", "binascii", "hashlib",
    "json", "collections", "io", "re", "random", "gc", "micropython", "math", "firmware",
))
LAYERS = ("drivers", "board", "tools", "tests")
WHY_NOT = {
    "dataclasses": "MicroPython has no dataclasses: write the class and its __init__",
    "typing": "MicroPython has no typing module: leave types to comments or docstrings",
    "traceback": "MicroPython has no traceback module: use firmware.core.compat.print_exception",
    "__future__": "MicroPython has no __future__ module",
}
SKIP_DIRS = {"node_modules", "__pycache__", ".git", ".venv", "venv", "build", "dist"}


# -- finding and parsing ------------------------------------------------------

def python_files(top):
    """Paths relative to ROOT, with forward slashes, of every .py under top."""
    found = []
    base = os.path.join(ROOT, top)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py"):
                found.append(os.path.relpath(os.path.join(dirpath, name), ROOT).replace(os.sep, "/"))
    return found


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def _package(rel):
    """The package a file's relative imports start from."""
    parts = rel[:-3].split("/")
    return parts[:-1]          # a/b/c.py and a/b/__init__.py both resolve from a.b


def imports(rel, source):
    """(line, module, inside_function, text) for every import in the source.

    Relative imports are resolved against the file's package; __import__("x") and
    importlib.import_module("x") with a literal name count as imports too.
    """
    tree = ast.parse(source, filename=rel)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append((child.lineno, alias.name, in_function, "import " + alias.name))
            elif isinstance(child, ast.ImportFrom):
                names = ", ".join(a.name for a in child.names)
                text = "from %s%s import %s" % ("." * child.level, child.module or "", names)
                if child.level:
                    base = _package(rel)
                    up = child.level - 1
                    if up > len(base):
                        found.append((child.lineno, "<beyond the top package>", in_function, text))
                        continue
                    base = base[:len(base) - up]
                    if not base and not child.module:      # from ... import drivers
                        for alias in child.names:
                            found.append((child.lineno, alias.name, in_function, text))
                        continue
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                found.append((child.lineno, target, in_function, text))
            elif isinstance(child, ast.Call) and child.args and isinstance(child.args[0], ast.Constant) \
                    and isinstance(child.args[0].value, str):
                func = child.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in ("__import__", "import_module"):
                    found.append((child.lineno, child.args[0].value, in_function,
                                  "%s(%r)" % (name, child.args[0].value)))
            visit(child, inner)

    visit(tree, False)
    return found


def _top(module):
    return module.split(".")[0]


# -- the rules ------------------------------------------------------------------

def parse_problem(rel, source):
    """A file that does not parse breaks every rule at once: say where."""
    try:
        ast.parse(source, filename=rel)
    except SyntaxError as exc:
        return "%s:%s: does not parse: %s" % (rel, exc.lineno, exc.msg)
    return None


def firmware_import_problems(rel, source):
    problems = []
    for line, module, in_function, text in imports(rel, source):
        top = _top(module)
        where = "%s:%d: %s" % (rel, line, text)
        if top == "traceback":
            if rel == "firmware/core/compat.py" and in_function:
                continue     # CPython's half of compat.print_exception, never run on MicroPython
            problems.append(where + " -- traceback only inside a function in firmware/core/compat.py; "
                            + WHY_NOT["traceback"])
        elif top in LAYERS:
            problems.append(where + " -- firmware/ must not import %s/: the core defines the "
                            "interfaces and board/ hands it the drivers" % top)
        elif top not in PORTABLE_MODULES:
            problems.append(where + " -- " + WHY_NOT.get(
                top, "%s is not in the stdlib both CPython and MicroPython have (allowed: %s)"
                % (top, ", ".join(sorted(PORTABLE_MODULES)))))
    return problems


# "{expr=}", "{expr = !r}", "{expr=:>8}": an "=" ending the expression, not part of
# ==, !=, <=, >= and not inside a format spec
_DEBUG_FIELD = re.compile(r"(?<!\{)\{(?!\{)[^{}]*?[^=!<>:{]\s*=\s*(?:![rsa])?\s*(?::[^{}]*)?\}")


def _debug_fstring(node, source):
    """True when a JoinedStr uses the self-documenting "=" specifier."""
    # The specifier always leaves a literal ending in "=" just before the value,
    # which is also what f"x={x!r}" gives: the source text tells them apart.
    values = node.values
    suspicious = any(isinstance(a, ast.Constant) and isinstance(a.value, str)
                     and a.value.rstrip().endswith("=") and isinstance(b, ast.FormattedValue)
                     for a, b in zip(values, values[1:]))
    if not suspicious:
        return False
    segment = ast.get_source_segment(source, node) or ""
    return bool(_DEBUG_FIELD.search(segment))


def firmware_construct_problems(rel, source):
    problems = []
    tree = ast.parse(source, filename=rel)
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.cause is not None:
            problems.append("%s:%d: raise ... from ... -- MicroPython has no exception chaining "
                            "(it warns and drops the cause): raise the new exception alone, "
                            "with the cause in its message" % (rel, node.lineno))
        elif isinstance(node, ast.JoinedStr) and _debug_fstring(node, source):
            problems.append("%s:%d: f-string \"=\" debug specifier -- write the label out: "
                            "\"x=%%r\" %% (x,)" % (rel, node.lineno))
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                name = target.id if isinstance(target, ast.Name) else \
                    target.attr if isinstance(target, ast.Attribute) else ""
                if name == "dataclass":
                    problems.append("%s:%d: @dataclass -- %s"
                                    % (rel, deco.lineno, WHY_NOT["dataclasses"]))
    return problems


def layer_problems(rel, source, forbidden):
    problems = []
    for line, module, _, text in imports(rel, source):
        if _top(module) in forbidden:
            problems.append("%s:%d: %s -- %s/ must not import %s/"
                            % (rel, line, text, rel.split("/")[0], _top(module)))
    return problems


# firmware/ rooms: what each may import inside firmware/ (None: any room but terminal)
ROOM_ALLOWS = {"core": ("core",), "ui": ("core", "ui")}
ROOMS_ON_TOP = ("flows", "terminal")


def _room(module):
    """The firmware room of a dotted module: core, ui, flows, terminal, or a domain."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "firmware" else None


def room_problems(rel, source):
    """Imports that go up the stack inside firmware/ (see the module docstring)."""
    problems = []
    own = _room(rel[:-3].replace("/", "."))
    if own is None or own == "terminal":
        return problems
    for line, module, _, text in imports(rel, source):
        target = _room(module)
        if target is None or _top(module) != "firmware":
            continue
        if own in ROOM_ALLOWS:
            ok = target in ROOM_ALLOWS[own]
        elif own == "flows":
            ok = target != "terminal"
        else:                                   # a domain
            ok = target not in ROOMS_ON_TOP
        if not ok:
            problems.append("%s:%d: %s -- firmware/%s/ must not import firmware/%s: %s"
                            % (rel, line, text, own, target,
                               "take it from core/ (or a domain) instead" if target == "terminal"
                               else "move what both need down a room"))
    return problems


def module_graph(tops=("firmware", "drivers", "board", "tools")):
    """{module: {imported project module: (rel, line)}}, late imports included.

    `from pkg import name` counts as an import of pkg.name when that is a module."""
    files = {}
    for top in tops:
        for rel in python_files(top):
            name = rel[:-3].replace("/", ".")
            files[name[:-9] if name.endswith(".__init__") else name] = rel
    graph = {}
    for name, rel in files.items():
        source = read(rel)
        edges = {}
        tree = ast.parse(source, filename=rel)
        for node in ast.walk(tree):
            found = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = [node.module + "." + a.name if node.module + "." + a.name in files
                         else node.module for a in node.names]
            for target in found:
                if target in files and target != name and not read(files[target]).strip() == "":
                    edges.setdefault(target, (rel, node.lineno))
        graph[name] = edges
    return graph


def import_circles(graph):
    """Each circle once, as a list of modules [a, b, ..., a], shortest first."""
    circles = []
    seen = set()
    for start in sorted(graph):
        # breadth-first from start back to start: the shortest circle through it
        parents = {start: None}
        queue = [start]
        hit = None
        while queue and hit is None:
            nxt = []
            for v in queue:
                for w in sorted(graph.get(v, ())):
                    if w == start:
                        hit = v
                        break
                    if w not in parents:
                        parents[w] = v
                        nxt.append(w)
                if hit is not None:
                    break
            queue = nxt
        if hit is None:
            continue
        path = [hit]
        while parents[path[-1]] is not None:
            path.append(parents[path[-1]])
        path.reverse()
        key = frozenset(path)
        if key not in seen:
            seen.add(key)
            circles.append(path + [start])
    return sorted(circles, key=len)


def _describe_circle(graph, circle):
    steps = ["%s (%s:%d)" % (a, graph[a][b][0], graph[a][b][1]) for a, b in zip(circle, circle[1:])]
    return " -> ".join(steps) + " -> " + circle[-1]


def _report(problems):
    return "\n" + "\n".join(problems)


# -- the repository -------------------------------------------------------------

def test_firmware_imports_only_portable_stdlib_and_itself():
    files = python_files("firmware")
    assert "firmware/core/compat.py" in files and len(files) >= 5, files
    problems = []
    seen = set()
    for rel in files:
        source = read(rel)
        broken = parse_problem(rel, source)
        if broken:
            problems.append(broken)
            continue
        problems += firmware_import_problems(rel, source)
        seen.update(_top(m) for _, m, _, _ in imports(rel, source))
    assert not problems, _report(problems)
    assert {"sys", "firmware"} <= seen       # the walk really read imports


def test_firmware_avoids_what_micropython_lacks():
    problems = []
    for rel in python_files("firmware"):
        source = read(rel)
        if parse_problem(rel, source) is None:     # reported by the import check
            problems += firmware_construct_problems(rel, source)
    assert not problems, _report(problems)


def test_firmware_rooms_import_only_downwards():
    problems = []
    for rel in python_files("firmware"):
        source = read(rel)
        if parse_problem(rel, source) is None:
            problems += room_problems(rel, source)
    assert not problems, _report(problems)
    rooms = {rel.split("/")[1] for rel in python_files("firmware") if rel.count("/") > 1}
    assert {"core", "ui", "payments", "cards", "security", "flows"} <= rooms, rooms


def test_no_import_circles():
    graph = module_graph()
    assert "firmware.terminal" in graph and len(graph) > 50
    circles = import_circles(graph)
    assert not circles, _report(["import circle: " + _describe_circle(graph, c) for c in circles])


def test_drivers_import_nothing_from_board_tools_or_tests():
    problems = []
    for rel in python_files("drivers"):
        source = read(rel)
        broken = parse_problem(rel, source)
        problems += [broken] if broken else layer_problems(rel, source, ("board", "tools", "tests"))
    assert not problems, _report(problems)


def test_nothing_outside_tests_imports_tests():
    problems = []
    for top in sorted(os.listdir(ROOT)):
        if top in SKIP_DIRS or top.startswith(".") or top == "tests":
            continue
        if os.path.isdir(os.path.join(ROOT, top)):
            rels = python_files(top)
        elif top.endswith(".py"):
            rels = [top]
        else:
            continue
        for rel in rels:
            source = read(rel)
            broken = parse_problem(rel, source)
            problems += [broken] if broken else layer_problems(rel, source, ("tests",))
    assert not problems, _report(problems)


# -- the checker itself: each rule catches what it should and only that ----------

def test_checker_flags_foreign_and_layer_imports_with_file_and_line():
    source = "import sys\nimport typing\nfrom drivers.display import X\nimport os.path\nfrom dataclasses import dataclass\n"
    problems = firmware_import_problems("firmware/x.py", source)
    assert len(problems) == 3, problems
    assert problems[0].startswith("firmware/x.py:2: import typing -- ")
    assert problems[1].startswith("firmware/x.py:3: from drivers.display import X -- ")
    assert problems[2].startswith("firmware/x.py:5: from dataclasses import dataclass -- ")


def test_checker_resolves_relative_and_dynamic_imports():
    assert firmware_import_problems("firmware/flows/a.py", "from . import b\nfrom ..compat import const\n") == []
    problems = firmware_import_problems("firmware/flows/a.py", "from ... import drivers\n")
    assert problems and "beyond" not in problems[0] and "drivers" in problems[0]
    problems = firmware_import_problems("firmware/flows/a.py", "from .... import x\n")
    assert len(problems) == 1 and "beyond the top package" in problems[0]
    problems = firmware_import_problems("firmware/x.py", "def f():\n    return __import__('board.pins')\n")
    assert len(problems) == 1 and problems[0].startswith("firmware/x.py:2: __import__('board.pins')")


def test_checker_allows_traceback_only_inside_a_function_in_compat():
    inside = "def p(e):\n    import traceback\n    traceback.print_exc()\n"
    at_top = "import traceback\n"
    assert firmware_import_problems("firmware/core/compat.py", inside) == []
    assert len(firmware_import_problems("firmware/core/compat.py", at_top)) == 1
    assert len(firmware_import_problems("firmware/ui/screen.py", inside)) == 1
    in_method = "class C:\n    def m(self):\n        import traceback\n"
    assert firmware_import_problems("firmware/core/compat.py", in_method) == []


def test_checker_flags_chaining_debug_fstrings_and_dataclass():
    def lines(source):
        return [p.split(":")[1] for p in firmware_construct_problems("firmware/x.py", source)]
    assert lines("try:\n    pass\nexcept E as e:\n    raise V('x') from e\n") == ["4"]
    assert lines("raise V() from None\n") == ["1"]
    assert lines("x = 1\ns = f'{x=}'\n") == ["2"]
    assert lines("s = f'{x = }'\n") == ["1"]
    assert lines("s = f'{x=:>8}'\n") == ["1"]
    assert lines("s = f'total {a.b=!s} left'\n") == ["1"]
    assert lines("from dataclasses import dataclass\n@dataclass\nclass C:\n    x: int = 0\n") == ["2"]
    # look-alikes that MicroPython runs
    assert lines("s = f'x={x!r}'\n") == []
    assert lines("s = f'x = {x}'\n") == []
    assert lines("s = f'{a == b} {a != b} {a <= b} {a >= b}'\n") == []
    assert lines("s = f'{x:=^10}'\n") == []
    assert lines("s = f'{{x=}}'\n") == []
    assert lines("if (n := 3) > 2:\n    raise ValueError(n)\n") == []


def test_checker_flags_layer_imports():
    source = "import os\nfrom board.compose import build\nimport tools.sim.simulator\nimport tests.conftest\nfrom firmware import keys\n"
    problems = layer_problems("drivers/x.py", source, ("board", "tools", "tests"))
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4"]
    assert problems[0] == "drivers/x.py:2: from board.compose import build -- drivers/ must not import board/"


def test_checker_flags_rooms_importing_upwards():
    up = "from firmware.flows.sale import SaleFlow\nfrom firmware.core import keys\n"
    assert [p.split(":")[1] for p in room_problems("firmware/core/money.py", up)] == ["1"]
    assert len(room_problems("firmware/ui/screen.py", "from firmware.payments import journal\n")) == 1
    assert room_problems("firmware/ui/screen.py", "from firmware.core import keys\n") == []
    assert len(room_problems("firmware/payments/x.py", up)) == 1
    assert room_problems("firmware/payments/x.py", "from firmware.security import dukpt\n") == []
    late = "def f():\n    from firmware.terminal import VERSION\n"
    problems = room_problems("firmware/flows/settings.py", late)
    assert len(problems) == 1 and problems[0].startswith("firmware/flows/settings.py:2:")
    assert room_problems("firmware/terminal.py", up) == []


def test_checker_finds_circles_through_late_imports():
    graph = {"a": {"b": ("a.py", 1)}, "b": {"c": ("b.py", 7)}, "c": {"a": ("c.py", 3)},
             "d": {"a": ("d.py", 1)}}
    circles = import_circles(graph)
    assert len(circles) == 1 and set(circles[0]) == {"a", "b", "c"}
    assert "b (b.py:7) -> c" in _describe_circle(graph, circles[0])
    assert import_circles({"a": {"b": ("a.py", 1)}, "b": {}}) == []
