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


_DEF = re.compile(r"^(?P<indent>\s*)(?:async\s+)?def\s+(?P<name>\w+)")


def _enclosing_functions(lines, regions):
    """For each region, the name of the function it sits in (or '' at module level)."""
    names = []
    for region in regions:
        name = ""
        for line in reversed(lines[: region.start]):
            match = _DEF.match(line)
            if match and len(match["indent"]) < len(region.indent):
                name = match["name"]
                break
        names.append(name)
    return names


def region_functions(source, where="<source>"):
    """For each marked region, the qualified name of the innermost function holding it ('' outside any).

    A method's name is `Class.method`, as in the manifest's "module:qualified.name" (asgn3/assignment.py).
    """
    spans = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno, name))
                visit(child, name + ".")

    visit(ast.parse(source), "")
    owners = []
    for region in find_regions(source, where):
        holding = [span for span in spans if span[0] <= region.start + 1 and region.end + 1 <= span[1]]
        owners.append(max(holding, key=lambda span: span[0])[2] if holding else "")
    return owners


def _top_level_names(tree):
    """Names a module defines at its top level (functions, classes, assignments, imports)."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def splice_regions(master, submitted, where="<source>"):
    """splice_with_lines without the line map: (text, note)."""
    text, note, _ = splice_with_lines(master, submitted, where)
    return text, note


def splice_with_lines(master, submitted, where="<source>"):
    """Put a submission's marked regions into the master's file, keeping the master's code around them.

    Inputs:
    - master: the staff file's text (reference regions, current infrastructure).
    - submitted: the student's version of the same file.
    - where: a name for messages.

    Returns (text, note, lines). The text is the master's file with the body of each region replaced by the
    student's, region by region (they must be as many, in the same functions), followed by what the
    student defined at the top level that the master does not (their own helpers and imports). When
    the regions do not correspond, or the file does not parse, text is the submitted file as it is and
    the note says why. lines maps each line number of the text that came from the submission to its
    line number in the submitted file (1-based), so that errors can point into the student's own file.
    """
    try:
        master_regions, student_regions = find_regions(master, where), find_regions(submitted, where)
        student_tree, master_tree = ast.parse(submitted), ast.parse(master)
    except (ValueError, SyntaxError) as error:
        return submitted, f"whole file used ({type(error).__name__}: {error})", _identity(submitted)
    master_lines, student_lines = master.splitlines(), submitted.splitlines()
    if _enclosing_functions(master_lines, master_regions) != _enclosing_functions(
        student_lines, student_regions
    ):
        return (
            submitted,
            "whole file used (its START/END regions differ from the kit's)",
            _identity(submitted),
        )
    out, position, lines = [], 0, {}
    for mine, theirs in zip(master_regions, student_regions, strict=True):
        out += master_lines[position : mine.start + 1]
        for number in range(theirs.start + 1, theirs.end):
            out.append(student_lines[number])
            lines[len(out)] = number + 1
        position = mine.end
    out += master_lines[position:]
    known = _top_level_names(master_tree)
    own = [
        node
        for node in student_tree.body
        if isinstance(
            node,
            ast.FunctionDef
            | ast.AsyncFunctionDef
            | ast.ClassDef
            | ast.Assign
            | ast.AnnAssign
            | ast.Import
            | ast.ImportFrom,
        )
        and not _top_level_names(ast.Module(body=[node], type_ignores=[])) <= known
    ]
    if own:
        out += ["", "", "# -- the submission's own definitions, outside the marked regions --"]
    for node in own:
        for offset, line in enumerate(ast.get_source_segment(submitted, node, padded=True).splitlines()):
            out.append(line)
            lines[len(out)] = node.lineno + offset
    note = "regions spliced into the kit's file" + (
        f", with {len(own)} definitions of its own" if own else ""
    )
    return "\n".join(out) + "\n", note, lines


def _identity(text):
    """The line map of a file used as it is."""
    return {number: number for number in range(1, text.count("\n") + 2)}
