#!/usr/bin/env python3
"""Sizes of the Rust sources under a directory: the largest files and the
longest functions.

A function's length is the number of lines of its body, from the line of
its opening brace to the line of its closing brace, both included. Braces
inside string and character literals and comments are skipped; `#[cfg(test)]`
modules count like any other code.

    python3 scripts/code-size.py eventhubs-proto/src [--top N]
"""

import os
import re
import sys

FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def strip(line, state):
    """The line with literals and comments blanked; `state` carries a block
    comment or raw string across lines."""
    out = []
    i = 0
    n = len(line)
    while i < n:
        if state["block"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block"] = False
            i = end + 2
            continue
        if state["raw"] is not None:
            end = line.find('"' + "#" * state["raw"], i)
            if end < 0:
                return "".join(out)
            i = end + 1 + state["raw"]
            state["raw"] = None
            continue
        if state["str"]:
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                state["str"] = False
            i += 1
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        m = re.match(r'b?r(#*)"', line[i:])
        if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
            state["raw"] = len(m.group(1))
            i += len(m.group(0))
            continue
        if c == '"':
            state["str"] = True
            i += 1
            continue
        if c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            m = re.match(r"'(\\.[^']*|[^\\'])'", line[i:])
            if m:
                i += len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def functions(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    state = {"block": False, "raw": None, "str": False}
    code = [strip(l, state) for l in lines]
    found = []
    for i, l in enumerate(code):
        m = FN.match(l)
        if not m:
            continue
        # The body opens at the first `{` after the signature; a `;` first
        # means a declaration without a body (a trait method).
        depth = 0
        start = None
        j = i
        col = m.end()
        while j < len(code):
            segment = code[j][col:] if j == i else code[j]
            for ch in segment:
                if start is None:
                    if ch == ";" and depth == 0:
                        break
                    if ch == "{":
                        start = j
                        depth = 1
                    elif ch in "([":
                        depth -= 1  # parentheses of the signature
                    elif ch in ")]":
                        depth += 1
                    continue
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        break
            else:
                j += 1
                continue
            break
        if start is None:
            continue
        found.append((j - start + 1, m.group(1), path, i + 1))
    return len(lines), found


def main():
    args = sys.argv[1:]
    top = 5
    if "--top" in args:
        k = args.index("--top")
        top = int(args[k + 1])
        del args[k : k + 2]
    root = args[0] if args else "eventhubs-proto/src"
    files = []
    fns = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                p = os.path.join(dirpath, name)
                n, f = functions(p)
                files.append((n, p))
                fns.extend(f)
    files.sort(reverse=True)
    fns.sort(reverse=True)
    print(f"{root}: {len(files)} files, {sum(n for n, _ in files)} lines, {len(fns)} functions")
    print("largest files (lines):")
    for n, p in files[:top]:
        print(f"  {n:6}  {p}")
    print("longest functions (body lines):")
    for n, name, p, line in fns[:top]:
        print(f"  {n:6}  {name}  {p}:{line}")


if __name__ == "__main__":
    main()
