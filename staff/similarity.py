"""Which submissions look alike: `python -m staff.similarity DIR --csv OUT.csv [--html OUT.html]`.

DIR holds the submissions: zips (checked and extracted by staff/safezip.py) or folders already unpacked.
Only what students write is compared: the code between the START/END markers of the graded modules
(asgn3/assignment.py lists them), or, when a student removed the markers, the whole file. Every line that
the released skeleton also has (its docstrings, `pass`, the given `N, T, D = x.shape`...) is ignored, so
two untouched stubs have nothing to compare.

The method is winnowing (Schleimer, Wilkerson and Aiken, SIGMOD 2003; the method behind MOSS):
1. The code becomes a sequence of tokens in which every local identifier is `V`, every number `0`, every
   string `""`, and comments vanish; keywords, builtins, attribute names (`.sum`, `.T`) and the names the
   skeleton defines (`np`, `rnn_step_forward`) stay, as renaming those would change what the code does.
2. Each run of K consecutive tokens is hashed; in every window of W consecutive hashes the smallest is
   kept. The kept hashes (the fingerprints) are a small sample that still contains every shared run of
   at least K + W - 1 tokens, wherever it sits: statements moved around keep their fingerprints.
3. Fingerprints that the skeleton itself produces, or that many submissions share (idioms everyone
   writes), are dropped. Two submissions are then compared by their shared fingerprints.
A pair's similarity is the share of the smaller fingerprint set found in the other; pairs are ranked by
it, and each comes with the line ranges whose fingerprints match, side by side in the HTML report.
"""

import argparse
import builtins
import csv
import hashlib
import html
import keyword
import re
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from asgn3.assignment import graded_modules
from asgn3.data_paths import KIT_DIR
from staff.markers import find_regions, stub_source
from staff.safezip import SubmissionError, extract_zip

K_GRAM = 12  # tokens per hashed run (the noise threshold: shorter runs never count)
WINDOW = 6  # hashes per winnowing window (every shared run of K_GRAM + WINDOW - 1 tokens is found)
COMMON_SHARE = 0.1  # fingerprints in more than this share of the submissions are idioms, not copies
COMMON_FLOOR = 3  # ... but a fingerprint shared by at most this many submissions is always kept

_TOKEN = re.compile(
    r"""
    (?P<string>(?:[rRbBuUfF]{1,2})?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
    |(?P<comment>\#[^\n]*)
    |(?P<number>(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?[jJ]?)
    |(?P<name>[^\W\d]\w*)
    |(?P<newline>\n)
    |(?P<space>[ \t\f\r\\]+)
    |(?P<op>\*\*=?|//=?|->|<<=?|>>=?|[-+*/%@&|^<>!=:]=|\S)
    """,
    re.VERBOSE,
)
_KEPT_NAMES = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))


@dataclass(frozen=True)
class Token:
    """A normalised token and the 1-based line of the submitted file it comes from."""

    text: str
    line: int


@dataclass(frozen=True, order=True)
class Location:
    """Where a fingerprint's run of tokens lies: a file of the submission and its first and last line."""

    file: str
    first: int
    last: int


@dataclass
class Submission:
    """A submission's fingerprints ({hash: [Location]}) and the text of its files, for the report."""

    name: str
    fingerprints: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    """A run of lines of submission A whose fingerprints are found in a run of lines of submission B."""

    a: Location
    b: Location


@dataclass(frozen=True)
class Pair:
    """Two submissions, their shared fingerprints and the matching line ranges."""

    a: str
    b: str
    shared: int
    share_a: float  # the share of A's fingerprints found in B
    share_b: float
    matches: tuple

    @property
    def similarity(self):
        """The share of the smaller fingerprint set found in the other (1.0: one contains the other)."""
        return max(self.share_a, self.share_b)


# -- tokens and fingerprints -------------------------------------------------------------------------


def normalised_tokens(lines, known_names=frozenset()):
    """Tokens of some source lines with identifiers, literals and comments normalised.

    Inputs:
    - lines: list of (line number, text) pairs, consecutive or not (ignored lines are left out).
    - known_names: names kept as they are (those the skeleton defines), besides keywords, builtins and
      attribute names.

    Returns a list of Tokens. A statement boundary is the token `;` (line breaks inside brackets are
    not boundaries, so reflowing a call changes nothing); blank and comment-only lines give no token.
    Never fails: a fragment that is not valid Python is tokenised all the same.
    """
    tokens, depth = [], 0
    for number, text in lines:
        for match in _TOKEN.finditer(text + "\n"):
            kind, value = match.lastgroup, match.group()
            if kind in ("space", "comment"):
                continue
            if kind == "newline":
                if depth == 0 and tokens and tokens[-1].text != ";":
                    tokens.append(Token(";", number))
                continue
            if kind == "op":
                depth = depth + 1 if value in ("(", "[", "{") else depth
                depth = max(depth - 1, 0) if value in (")", "]", "}") else depth
            elif kind == "string":
                value = '""'
            elif kind == "number":
                value = "0"
            elif value not in _KEPT_NAMES and value not in known_names:
                value = value if tokens and tokens[-1].text == "." else "V"  # attributes stay
            tokens.append(Token(value, number))
    return tokens


def _hash(texts):
    """A 64-bit hash of a run of token texts (stable across runs and machines)."""
    return int.from_bytes(hashlib.blake2b("\x1f".join(texts).encode(), digest_size=8).digest(), "big")


def winnow(tokens, k=K_GRAM, window=WINDOW):
    """The fingerprints of a token sequence: [(hash, first token index, last token index)].

    Every run of k tokens is hashed; of every `window` consecutive hashes the smallest (the rightmost
    on ties) is kept, once. A sequence shorter than k tokens has no fingerprint.
    """
    texts = [token.text for token in tokens]
    hashes = [_hash(texts[i : i + k]) for i in range(len(texts) - k + 1)]
    if not hashes:
        return []
    chosen = []
    for start in range(max(len(hashes) - window + 1, 1)):
        candidates = range(start, min(start + window, len(hashes)))
        best = min(candidates, key=lambda i: (hashes[i], -i))
        if not chosen or chosen[-1] != best:
            chosen.append(best)
    return [(hashes[i], i, i + k - 1) for i in chosen]


# -- what a submission wrote -------------------------------------------------------------------------


def student_lines(submitted, skeleton, where="<file>"):
    """The lines a student wrote in one file: [(1-based line number, text)] in regions of code.

    Inputs:
    - submitted: the text of the student's file.
    - skeleton: the text of the same file in the student kit (the release stub).

    Returns one list per region between START/END markers (the whole file as one region when the
    markers are missing or broken), without the lines that the skeleton also has (compared stripped).
    """
    given = {line.strip() for line in skeleton.splitlines()}
    lines = submitted.splitlines()
    try:
        regions = [range(r.start + 1, r.end) for r in find_regions(submitted, where)]
    except ValueError:
        regions = []
    if not regions:
        regions = [range(len(lines))]
    return [[(n + 1, lines[n]) for n in region if lines[n].strip() not in given] for region in regions]


def skeleton_names(skeleton):
    """The names a skeleton file defines or imports at its top level (kept as they are when tokenising)."""
    names = set()
    for line in skeleton.splitlines():
        if match := re.match(r"(?:async\s+)?(?:def|class)\s+(\w+)", line):
            names.add(match[1])
        elif match := re.match(r"import\s+([\w.]+)(?:\s+as\s+(\w+))?", line):
            names.add(match[2] or match[1].split(".")[0])
        elif match := re.match(r"from\s+[\w.]+\s+import\s+(.+)", line):
            names |= {part.split(" as ")[-1].strip(" ()") for part in match[1].split(",")}
    return names - {""}


@dataclass(frozen=True)
class Skeleton:
    """One graded file as the student kit has it: its text, the names it defines, its fingerprints."""

    path: str
    text: str
    names: frozenset
    fingerprints: frozenset


def load_skeletons(kit_dir=KIT_DIR):
    """The released skeleton of every graded module (asgn3/assignment.py), from the master copy."""
    skeletons = []
    for module in graded_modules():
        path = module.replace(".", "/") + ".py"
        text = stub_source((Path(kit_dir) / path).read_text(encoding="utf-8"), path)
        names = frozenset(skeleton_names(text))
        numbered = list(enumerate(text.splitlines(), start=1))
        prints = frozenset(h for h, _, _ in winnow(normalised_tokens(numbered, names)))
        skeletons.append(Skeleton(path, text, names, prints))
    return skeletons


def find_package(root):
    """The submission's asgn3 folder (the shallowest one), or None."""
    found = sorted((p for p in Path(root).rglob("asgn3") if p.is_dir()), key=lambda p: len(p.parts))
    return found[0] if found else None


def fingerprint_submission(name, root, skeletons):
    """The Submission of an unpacked submission folder: fingerprints of what it wrote in each graded file."""
    submission = Submission(name)
    package = find_package(root)
    for skeleton in skeletons:
        path = package.parent / skeleton.path if package else None
        if path is None or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        submission.files[skeleton.path] = text.splitlines()
        for region in student_lines(text, skeleton.text, skeleton.path):
            tokens = normalised_tokens(region, skeleton.names)
            for value, first, last in winnow(tokens):
                if value not in skeleton.fingerprints:
                    where = Location(skeleton.path, tokens[first].line, tokens[last].line)
                    submission.fingerprints.setdefault(value, []).append(where)
    return submission


def read_submissions(folder, kit_dir=KIT_DIR, log=print):
    """Fingerprint every submission of a folder (its zips and its subfolders), sorted by name.

    A zip that cannot be opened safely is reported through `log` and left out.
    """
    skeletons = load_skeletons(kit_dir)
    submissions = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.is_dir():
            submissions.append(fingerprint_submission(entry.name, entry, skeletons))
        elif entry.suffix == ".zip":
            with tempfile.TemporaryDirectory(prefix="asgn3-similarity-") as unpacked:
                try:
                    extract_zip(entry, unpacked)
                except SubmissionError as error:
                    log(f"{entry.name}: left out ({error})")
                    continue
                submissions.append(fingerprint_submission(entry.stem, Path(unpacked), skeletons))
    return submissions


# -- pairs -------------------------------------------------------------------------------------------


def drop_common(submissions, share=COMMON_SHARE, floor=COMMON_FLOOR):
    """Remove, in place, the fingerprints found in more than max(floor, share * count) submissions."""
    counts = defaultdict(int)
    for submission in submissions:
        for value in submission.fingerprints:
            counts[value] += 1
    limit = max(floor, share * len(submissions))
    common = {value for value, count in counts.items() if count > limit}
    for submission in submissions:
        for value in common & submission.fingerprints.keys():
            del submission.fingerprints[value]
    return len(common)


def matching_ranges(a, b, shared):
    """The line ranges of A and B whose fingerprints match, merged where they touch on both sides."""
    found = sorted((a.fingerprints[v][0], b.fingerprints[v][0]) for v in shared)  # first places, A's order
    merged = []
    for where_a, where_b in found:
        if merged:
            last = merged[-1]
            touches_a = where_a.file == last.a.file and where_a.first <= last.a.last + 1
            touches_b = (
                where_b.file == last.b.file
                and where_b.first <= last.b.last + 1
                and where_b.last >= last.b.first - 1
            )
            if touches_a and touches_b:
                merged[-1] = Match(
                    Location(last.a.file, last.a.first, max(last.a.last, where_a.last)),
                    Location(last.b.file, min(last.b.first, where_b.first), max(last.b.last, where_b.last)),
                )
                continue
        merged.append(Match(where_a, where_b))
    return tuple(merged)


def similar_pairs(submissions, min_shared=1):
    """The pairs of submissions that share at least min_shared fingerprints, most similar first.

    Inputs:
    - submissions: Submissions (after drop_common, if wanted).
    - min_shared: the fewest shared fingerprints for a pair to be listed.

    Returns a list of Pairs, sorted by similarity, then by the number of shared fingerprints.
    """
    pairs = []
    for a, b in combinations(submissions, 2):
        shared = a.fingerprints.keys() & b.fingerprints.keys()
        if len(shared) < max(min_shared, 1):
            continue
        pairs.append(
            Pair(
                a.name,
                b.name,
                len(shared),
                len(shared) / len(a.fingerprints),
                len(shared) / len(b.fingerprints),
                matching_ranges(a, b, shared),
            )
        )
    return sorted(pairs, key=lambda p: (-p.similarity, -p.shared, p.a, p.b))


# -- reports -----------------------------------------------------------------------------------------


def _range(where):
    return f"{where.file}:{where.first}-{where.last}"


def write_csv(pairs, path):
    """One row per pair: rank, the two submissions, similarity, shares, shared fingerprints, line ranges."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "a", "b", "similarity", "share_a", "share_b", "shared", "matching_lines"])
        for rank, pair in enumerate(pairs, start=1):
            ranges = "; ".join(f"{_range(m.a)} ~ {_range(m.b)}" for m in pair.matches)
            writer.writerow(
                [rank, pair.a, pair.b, f"{pair.similarity:.3f}", f"{pair.share_a:.3f}"]
                + [f"{pair.share_b:.3f}", pair.shared, ranges]
            )


def _code_block(lines, where):
    """A <pre> of a file's line range with line numbers, every character escaped."""
    shown = lines[where.first - 1 : where.last]
    body = "\n".join(f"{where.first + i:5d}  {html.escape(text)}" for i, text in enumerate(shown))
    return f"<div class=side><b>{html.escape(_range(where))}</b><pre>{body}</pre></div>"


def write_html(pairs, submissions, path, top=50):
    """An HTML report of the `top` most similar pairs, their matching line ranges side by side."""
    files = {s.name: s.files for s in submissions}
    parts = [
        "<!doctype html><meta charset=utf-8><title>asgn3 similarity</title>",
        "<style>body{font-family:sans-serif} .match{display:flex;gap:1em;margin-bottom:1em}"
        " .side{flex:1;min-width:0} pre{background:#f4f4f4;padding:.5em;overflow-x:auto}"
        " table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:2px 6px}</style>",
        "<h1>Similar submissions (student regions, skeleton lines ignored)</h1>",
        "<table><tr><th>rank</th><th>a</th><th>b</th><th>similarity</th><th>shared fingerprints</th></tr>",
    ]
    for rank, pair in enumerate(pairs[:top], start=1):
        parts.append(
            f"<tr><td><a href='#pair{rank}'>{rank}</a></td><td>{html.escape(pair.a)}</td>"
            f"<td>{html.escape(pair.b)}</td><td>{pair.similarity:.0%}</td><td>{pair.shared}</td></tr>"
        )
    parts.append("</table>")
    for rank, pair in enumerate(pairs[:top], start=1):
        parts.append(
            f"<h2 id='pair{rank}'>{rank}. {html.escape(pair.a)} and {html.escape(pair.b)}: "
            f"{pair.similarity:.0%} ({pair.share_a:.0%} of {html.escape(pair.a)}, "
            f"{pair.share_b:.0%} of {html.escape(pair.b)})</h2>"
        )
        for match in pair.matches:
            parts.append(
                "<div class=match>"
                + _code_block(files[pair.a][match.a.file], match.a)
                + _code_block(files[pair.b][match.b.file], match.b)
                + "</div>"
            )
    Path(path).write_text("\n".join(parts) + "\n", encoding="utf-8")


def main(argv=None):
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Rank pairs of submissions by the similarity of their code.")
    parser.add_argument("folder", help="a folder of submissions (zips, or unpacked folders)")
    parser.add_argument("--csv", required=True, help="write the ranked pairs here")
    parser.add_argument("--html", help="write a report with the matching lines side by side here")
    parser.add_argument("--top", type=int, default=50, help="pairs shown in the HTML report (default 50)")
    parser.add_argument(
        "--common",
        type=float,
        default=COMMON_SHARE,
        help=f"ignore fingerprints found in more than this share of the submissions (default {COMMON_SHARE})",
    )
    args = parser.parse_args(argv)
    if not Path(args.folder).is_dir():
        print(f"similarity: {args.folder} is not a folder: give the folder of submissions", file=sys.stderr)
        return 2
    submissions = read_submissions(args.folder)
    dropped = drop_common(submissions, args.common)
    pairs = similar_pairs(submissions)
    write_csv(pairs, args.csv)
    if args.html:
        write_html(pairs, submissions, args.html, args.top)
    print(
        f"{len(submissions)} submissions, {dropped} common fingerprints ignored, {len(pairs)} pairs "
        f"with shared code; written to {args.csv}" + (f" and {args.html}" if args.html else "")
    )
    for rank, pair in enumerate(pairs[:10], start=1):
        print(f"{rank:3d}. {pair.similarity:5.0%}  {pair.a}  {pair.b}  ({pair.shared} fingerprints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
