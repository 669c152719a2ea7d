#!/usr/bin/env python3
"""Checks that the code in the user docs is code the test suite builds.

Every ```cpp block in the checked docs must directly follow a marker

    <!-- snippet: examples/snippets/FILE.cpp#REGION -->

and equal, line for line, the lines between `// [REGION]` and `// [/REGION]`
in that file, which tests/examples/meson.build compiles (with -Werror) and
runs. Every region of every snippet file must be shown somewhere, so a region
cannot rot unseen. A block that quotes a declaration from a header instead
follows

    <!-- excerpt: include/cachestore/HEADER.hpp -->

and must equal a run of consecutive lines of that file, indentation included
(the header is what the suite compiles). While at it, every ```json block must parse as JSON and
every ```xml block as XML (the lifecycle rules and IAM policies an operator
pastes).

Usage: check_snippets.py SOURCE_ROOT [DOC.md ...]   (default: README.md and every docs/*.md)
"""
import difflib
import json
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

DEFAULT_DOCS = ["README.md", "docs/*.md"]  # globs, relative to SOURCE_ROOT
MARKER = re.compile(r"^<!--\s*snippet:\s*(\S+?)#([\w-]+)\s*-->\s*$")
EXCERPT = re.compile(r"^<!--\s*excerpt:\s*(\S+?)\s*-->\s*$")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
REGION_OPEN = re.compile(r"^\s*//\s*\[([\w-]+)\]\s*$")
REGION_CLOSE = re.compile(r"^\s*//\s*\[/([\w-]+)\]\s*$")


def regions_of(path):
    """{name: [lines]} of a snippet file; nested or unbalanced markers are errors."""
    out, open_name, buf = {}, None, []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m_open, m_close = REGION_OPEN.match(line), REGION_CLOSE.match(line)
        if m_open:
            if open_name:
                raise ValueError(f"{path}:{n}: region [{m_open[1]}] opened inside [{open_name}]")
            open_name, buf = m_open[1], []
        elif m_close:
            if m_close[1] != open_name:
                raise ValueError(f"{path}:{n}: [/{m_close[1]}] closes {open_name or 'nothing'}")
            if open_name in out:
                raise ValueError(f"{path}:{n}: region [{open_name}] defined twice")
            out[open_name], open_name = buf, None
        elif open_name:
            buf.append(line)
    if open_name:
        raise ValueError(f"{path}: region [{open_name}] is never closed")
    return out


def blocks_of(doc):
    """[(lang, marker line or None, first line number, lines)] of the fenced blocks."""
    lines = doc.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m[1].lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            raise ValueError(f"{doc}:{start + 1}: unclosed code block")
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        out.append((lang, lines[k] if k >= 0 else None, start + 1, lines[start + 1 : j]))
        i = j + 1
    return out


def excerpt_problem(root, src, body):
    """None when `body` is a run of consecutive lines of `src`, else why not."""
    path = root / src
    if not path.is_file():
        return f"excerpt file {src} is missing"
    if not body:
        return f"empty excerpt of {src}"
    lines = path.read_text().splitlines()
    n = len(body)
    if any(lines[i : i + n] == body for i in range(len(lines) - n + 1)):
        return None
    # Say where it parts from the file: the longest matching prefix, at its best start.
    best, at = 0, 0
    for i in range(len(lines)):
        k = 0
        while k < n and i + k < len(lines) and lines[i + k] == body[k]:
            k += 1
        if k > best:
            best, at = k, i
    if best == 0:
        return f"excerpt's first line is not in {src}: {body[0]!r}"
    got = lines[at + best] if at + best < len(lines) else "(end of file)"
    return f"excerpt differs from {src}:{at + best + 1}: doc has {body[best]!r}, file has {got!r}"


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(sys.argv[1])
    docs = sys.argv[2:] or [str(p.relative_to(root)) for g in DEFAULT_DOCS for p in sorted(root.glob(g))]
    problems, shown, checked = [], set(), 0
    cache = {}
    for rel in docs:
        doc = root / rel
        if not doc.is_file():
            problems.append(f"{rel}: missing")
            continue
        try:
            blocks = blocks_of(doc)
        except ValueError as e:
            problems.append(str(e))
            continue
        for lang, marker_line, line, body in blocks:
            where = f"{rel}:{line}"
            marker = MARKER.match(marker_line) if marker_line is not None else None
            excerpt = EXCERPT.match(marker_line) if marker_line is not None else None
            if lang in ("cpp", "c++", "cxx") and excerpt:
                checked += 1
                problem = excerpt_problem(root, excerpt[1], body)
                if problem:
                    problems.append(f"{where}: {problem}")
            elif lang in ("cpp", "c++", "cxx"):
                if not marker:
                    problems.append(f"{where}: C++ block without a '<!-- snippet: FILE#REGION -->' "
                                    "(or '<!-- excerpt: HEADER -->') line above it")
                    continue
                src, region = marker[1], marker[2]
                path = root / src
                if src not in cache:
                    try:
                        cache[src] = regions_of(path) if path.is_file() else None
                    except ValueError as e:
                        problems.append(str(e))
                        cache[src] = None
                regions = cache[src]
                if regions is None:
                    problems.append(f"{where}: snippet file {src} is missing or malformed")
                    continue
                if region not in regions:
                    problems.append(f"{where}: {src} has no region [{region}] (has: {', '.join(sorted(regions))})")
                    continue
                shown.add((src, region))
                checked += 1
                if body != regions[region]:
                    diff = "\n".join(difflib.unified_diff(regions[region], body, f"{src}#{region}", where, lineterm=""))
                    problems.append(f"{where}: differs from {src}#{region}:\n{diff}")
            elif lang == "json":
                try:
                    json.loads("\n".join(body))
                except ValueError as e:
                    problems.append(f"{where}: JSON block does not parse: {e}")
            elif lang == "xml":
                try:
                    ET.fromstring("\n".join(body))
                except ET.ParseError as e:
                    problems.append(f"{where}: XML block does not parse: {e}")
    # Every region of every snippet file is shown somewhere.
    for snippet in sorted((root / "examples" / "snippets").glob("*.cpp")):
        rel = snippet.relative_to(root).as_posix()
        try:
            regions = regions_of(snippet)
        except ValueError as e:
            problems.append(str(e))
            continue
        if not regions:
            problems.append(f"{rel}: no // [REGION] ... // [/REGION] markers")
        for name in regions:
            if (rel, name) not in shown:
                problems.append(f"{rel}#{name}: not shown in any of {', '.join(docs)}")
    for p in problems:
        print("check_snippets: " + p, file=sys.stderr)
    print(f"check_snippets: {checked} C++ blocks checked against their snippet files and headers; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
