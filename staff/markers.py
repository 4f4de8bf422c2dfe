"""The START/END markers around student code, and the stubs the student kit gets in their place.

A marked region looks like this in a .py file or a notebook code cell:

        out, cache = None, None
        ###########################################################################
        # TODO: what the student must do                                          #
        ###########################################################################
        # *****START OF YOUR CODE*****
        ...reference implementation...
        # *****END OF YOUR CODE*****
        return out, cache

The stub keeps everything but the lines between START and END, which become `pass`. A name the region
assigns, that the code after END reads and that nothing before START set, is set to None in the stub, so
the function still returns (None) instead of failing with a NameError.
"""

import ast
import re
from dataclasses import dataclass

START = re.compile(r"^(?P<indent>\s*)#\s*\*+\s*START OF YOUR CODE\s*\*+\s*$")
END = re.compile(r"^\s*#\s*\*+\s*END OF YOUR CODE\s*\*+\s*$")


@dataclass(frozen=True)
class Region:
    """One marked region: 0-based line numbers of its START and END lines, and the START indentation."""

    start: int
    end: int
    indent: str


def find_regions(source, where="<source>"):
    """Return the marked regions of a source text, in order; a ValueError names a broken marker pair."""
    regions, open_at, indent = [], None, ""
    for number, line in enumerate(source.splitlines()):
        start, end = START.match(line), END.match(line)
        if start:
            if open_at is not None:
                raise ValueError(
                    f"{where}:{number + 1}: START marker inside the region opened at line "
                    f"{open_at + 1}: close it with '# *****END OF YOUR CODE*****' first"
                )
            open_at, indent = number, start["indent"]
        elif end:
            if open_at is None:
                raise ValueError(f"{where}:{number + 1}: END marker without a START marker above it")
            regions.append(Region(open_at, number, indent))
            open_at = None
    if open_at is not None:
        raise ValueError(f"{where}:{open_at + 1}: START marker without an END marker below it")
    return regions


def region_lines(source, where="<source>"):
    """The lines strictly between each START and END marker (the reference code), as one list."""
    lines = source.splitlines()
    return [line for region in find_regions(source, where) for line in lines[region.start + 1 : region.end]]


def outside_lines(source, where="<source>"):
    """The lines that are not strictly between a START and an END marker (markers included)."""
    lines = source.splitlines()
    inside = {n for region in find_regions(source, where) for n in range(region.start + 1, region.end)}
    return [line for n, line in enumerate(lines) if n not in inside]


def _names(nodes, context):
    """The plain names stored (ast.Store) or read (ast.Load) in the given nodes, with their line numbers."""
    found = []
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, context):
                found.append((sub.id, sub.lineno))
    return found


def _scope_of(tree, line):
    """The innermost function (or the module) whose body holds a 1-based line number."""
    scope = tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.lineno < line <= node.end_lineno and (scope is tree or node.lineno > scope.lineno):
                scope = node
    return scope


def _outputs_to_preset(tree, region):
    """Names the region assigns and the code after it reads, that are not set before START (sorted)."""
    first, last = region.start + 1, region.end + 1  # 1-based line numbers of START and END
    scope = _scope_of(tree, first)
    body = list(ast.iter_child_nodes(scope))
    stored = _names(body, ast.Store)
    inside = {name for name, line in stored if first < line < last}
    before = {name for name, line in stored if line < first}
    if not isinstance(scope, ast.Module):
        before |= {arg.arg for arg in ast.walk(scope.args) if isinstance(arg, ast.arg)}
    after = {name for name, line in _names(body, ast.Load) if line > last}
    return sorted((inside & after) - before)


def _without_magics(source):
    """The source with IPython magics and shell lines (%..., !...) turned into comments, for ast.parse."""
    return re.sub(r"(?m)^(\s*)([%!])", r"\1#\2", source)


def stub_source(source, where="<source>"):
    """Replace every marked region of a Python source by its stub; returns the new source text.

    Inputs:
    - source: the text of a .py file or of a notebook code cell, with marked regions.
    - where: a name for error messages (the file, or the notebook and cell).

    Returns the stubbed text (unchanged when there is no region). A ValueError names a broken marker
    pair, or a file that is not valid Python around its regions.
    """
    regions = find_regions(source, where)
    if not regions:
        return source
    try:
        tree = ast.parse(_without_magics(source))
    except SyntaxError as error:
        raise ValueError(f"{where}: cannot parse the reference code ({error}); fix it first") from None
    lines = source.splitlines(keepends=True)
    newline = "\n"
    out, position = [], 0
    for region in regions:
        out.extend(lines[position : region.start + 1])
        out.append(f"{region.indent}pass{newline}")
        out.extend(f"{region.indent}{name} = None{newline}" for name in _outputs_to_preset(tree, region))
        position = region.end
    out.extend(lines[position:])
    text = "".join(out)
    if not source.endswith("\n") and text.endswith("\n"):
        text = text[:-1]
    return text


def stub_notebook(notebook, where="<notebook>"):
    """Stub the marked regions of a notebook's code cells and clear every output, in place.

    Inputs:
    - notebook: a notebook as a dict (nbformat 4 JSON), changed in place.
    - where: a name for error messages.

    Returns the number of regions stubbed.
    """
    count = 0
    for number, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        count += len(find_regions(source, f"{where} cell {number}"))
        cell["source"] = stub_source(source, f"{where} cell {number}")
        cell["outputs"] = []
        cell["execution_count"] = None
    return count
