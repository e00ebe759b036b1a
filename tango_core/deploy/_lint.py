"""Small linters for what has no tool here: the structure of a Dockerfile (what hadolint does not
check: that COPY sources exist, the port, the health check) and a lexical parse of Kotlin
(brackets balanced outside strings and comments, the package matches its folder, every
resource and asset it names exists), and Kotlin's syntax through tree-sitter's Kotlin grammar
(the ``tree-sitter`` and ``tree-sitter-kotlin`` wheels, dev extra) where they are installed."""

from __future__ import annotations

import fnmatch
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any


# --- Dockerfile -----------------------------------------------------------------------------------
def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf, start = [], "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, args = buf.partition(" ")
        out.append((start, word.upper(), args.strip()))
        buf = ""
    return out


def _ignored(rel: str, patterns: list[str]) -> bool:
    hit = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel, pat + "/*") or rel.split("/")[0] == pat:
            hit = not negate
    return hit


def dockerfile_problems(path: Path, root: Path, record: dict[str, Any]) -> list[str]:
    text = path.read_text(encoding="utf-8")
    steps = instructions(text)
    problems = []
    if not steps:
        return ["empty Dockerfile"]
    first = next((s for s in steps if s[1] != "ARG"), steps[0])
    if first[1] != "FROM":
        problems.append(f"line {first[0]}: the first instruction is {first[1]}, not FROM")
    ignore_file = root / ".dockerignore"
    ignored = [ln.strip() for ln in ignore_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")] \
        if ignore_file.is_file() else []
    last_from = max(i for i, s in enumerate(steps) if s[1] == "FROM")
    user = None
    kinds = {s[1] for s in steps}
    for n, word, args in steps:
        if word == "FROM":
            image = args.split()[0]
            name = image.rsplit("/", 1)[-1]
            if "@" not in image and (":" not in name or name.endswith(":latest")):
                problems.append(f"line {n}: base image {image} has no fixed tag")
        elif word in ("COPY", "ADD"):
            parts = [a for a in args.split() if not a.startswith("--")]
            if word == "ADD" and any(p.startswith(("http://", "https://")) for p in parts):
                problems.append(f"line {n}: ADD of a URL: download in a RUN step with a checksum instead")
            for src in parts[:-1]:
                matches = [p for p in root.glob(src.rstrip("/")) if p.exists()]
                if not matches:
                    problems.append(f"line {n}: COPY source {src} is not in the package")
                for m in matches:
                    rel = m.relative_to(root).as_posix()
                    if _ignored(rel, ignored):
                        problems.append(f"line {n}: COPY source {rel} is excluded by .dockerignore")
        elif word == "USER":
            user = args.split(":")[0]
        elif word in ("CMD", "ENTRYPOINT"):
            try:
                if not isinstance(json.loads(args), list):
                    raise ValueError
            except ValueError:
                problems.append(f"line {n}: {word} is not in exec (JSON array) form, so signals miss the server")
        elif word == "RUN" and "pip install" in args:
            if "--no-cache-dir" not in args:
                problems.append(f"line {n}: pip install without --no-cache-dir bloats the image")
            if " -r " not in f" {args} ":
                problems.append(f"line {n}: pip install of unpinned names; install from the pinned requirements")
    if not kinds & {"CMD", "ENTRYPOINT"}:
        problems.append("no CMD or ENTRYPOINT")
    if user is None or user in ("root", "0"):
        problems.append("the container runs as root: add a USER")
    users_after_from = [s for s in steps[last_from:] if s[1] == "USER"]
    if not users_after_from and user is not None:
        problems.append("USER is set in an earlier stage only")
    exposed = [s[2] for s in steps if s[1] == "EXPOSE"]
    port = str(record.get("port"))
    if record.get("port") and not any(port == e.split("/")[0] for e in " ".join(exposed).split()):
        problems.append(f"EXPOSE does not list the server port {port}")
    health = [s[2] for s in steps if s[1] == "HEALTHCHECK"]
    if not health:
        problems.append("no HEALTHCHECK")
    elif "/health/" not in health[0]:
        problems.append("the HEALTHCHECK does not call /health/ready")
    return problems


# --- Kotlin ---------------------------------------------------------------------------------------
_PAIRS = {")": "(", "]": "[", "}": "{"}


def _scan_kotlin(text: str) -> list[str]:
    """Bracket balance outside comments, strings (with ``${...}`` templates) and char literals."""
    problems: list[str] = []
    stack: list[tuple[str, int]] = []
    # template nesting: each entry is the stack depth at which a "${" started inside a string
    templates: list[int] = []
    i, line, n = 0, 1, len(text)

    def skip_string(i: int, line: int, raw: bool) -> tuple[int, int, bool]:
        """Advance past a string body; stop at its end or at a ``${`` (returns True then)."""
        end = '"""' if raw else '"'
        while i < n:
            if text.startswith(end, i):
                return i + len(end), line, False
            c = text[i]
            if c == "\n":
                if not raw:
                    problems.append(f"line {line}: string not closed on its line")
                    return i, line, False
                line += 1
            if c == "\\" and not raw:
                i += 2
                continue
            if text.startswith("${", i):
                return i + 2, line, True
            i += 1
        problems.append(f"line {line}: string not closed")
        return i, line, False

    string_kinds: list[bool] = []  # raw flag of the string each open template belongs to
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += text[i] == "\n"
                    i += 1
            if depth:
                problems.append("a /* comment is never closed")
        elif c == '"':
            raw = text.startswith('"""', i)
            i, line, in_template = skip_string(i + (3 if raw else 1), line, raw)
            if in_template:
                templates.append(len(stack))
                string_kinds.append(raw)
                stack.append(("{", line))
        elif c == "'":
            m = re.match(r"'(\\u[0-9a-fA-F]{4}|\\.|[^'\\\n])'", text[i:])
            if not m:
                problems.append(f"line {line}: malformed character literal")
                i += 1
            else:
                i += len(m.group(0))
        elif c in "([{":
            stack.append((c, line))
            i += 1
        elif c in ")]}":
            if not stack or stack[-1][0] != _PAIRS[c]:
                opened = f" (open {stack[-1][0]} from line {stack[-1][1]})" if stack else ""
                problems.append(f"line {line}: unexpected {c}{opened}")
                return problems
            stack.pop()
            i += 1
            if c == "}" and templates and templates[-1] == len(stack):
                templates.pop()
                raw = string_kinds.pop()
                i, line, in_template = skip_string(i, line, raw)
                if in_template:
                    templates.append(len(stack))
                    string_kinds.append(raw)
                    stack.append(("{", line))
        else:
            i += 1
    for opener, where in stack:
        problems.append(f"line {where}: {opener} is never closed")
    return problems


def kotlin_problems(path: Path, root: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    problems = _scan_kotlin(text)
    m = re.search(r"^package\s+([\w.]+)", text, re.M)
    if not m:
        problems.append("no package declaration")
    else:
        parts = path.relative_to(root).parts
        if "java" in parts or "kotlin" in parts:
            base = parts.index("java") if "java" in parts else parts.index("kotlin")
            folder = ".".join(parts[base + 1:-1])
            if folder != m.group(1):
                problems.append(f"package {m.group(1)} does not match its folder {folder}")
    main = next((p for p in path.parents if p.name == "main"), None)
    if main is not None:
        res = main / "res"
        layouts = {p.stem for p in res.glob("layout/*.xml")}
        ids = set()
        for p in res.glob("layout/*.xml"):
            ids |= set(re.findall(r'@\+id/(\w+)', p.read_text(encoding="utf-8")))
        strings = set()
        for p in res.glob("values/*.xml"):
            strings |= set(re.findall(r'<string name="(\w+)"', p.read_text(encoding="utf-8")))
        for kind, name in re.findall(r"\bR\.(id|layout|string)\.(\w+)", text):
            known = {"id": ids, "layout": layouts, "string": strings}[kind]
            if name not in known:
                problems.append(f"R.{kind}.{name} is not defined in res/")
        assets = main / "assets"
        for name in re.findall(r'_ASSET\s*=\s*"([^"]+)"', text):
            if not (assets / name).is_file():
                problems.append(f"asset {name} is not in {assets.relative_to(root).as_posix()}")
    return problems


@lru_cache(maxsize=1)
def _kotlin_parser():
    try:
        import tree_sitter
        import tree_sitter_kotlin
    except ImportError:
        return None
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_kotlin.language()))


def kotlin_syntax_problems(path: Path, limit: int = 5) -> list[str] | None:
    """Syntax errors of a Kotlin file by tree-sitter's Kotlin grammar (tree-sitter-kotlin): each
    ERROR node (what the parser could not fit into the grammar) and each token it had to invent
    (MISSING), with line and column; None when tree-sitter-kotlin is not installed."""
    parser = _kotlin_parser()
    if parser is None:
        return None
    source = path.read_bytes()
    tree = parser.parse(source)
    problems: list[str] = []
    if not tree.root_node.has_error:
        return problems
    todo = [tree.root_node]
    while todo and len(problems) < limit:
        node = todo.pop()
        if node.is_missing:
            problems.append(f"line {node.start_point[0] + 1}:{node.start_point[1] + 1}: syntax error, "
                            f"missing {node.type!r}")
        elif node.type == "ERROR":
            text = source[node.start_byte:node.end_byte].decode("utf-8", "replace").strip().splitlines()
            snippet = (text[0][:60] if text else "")
            problems.append(f"line {node.start_point[0] + 1}:{node.start_point[1] + 1}: syntax error at "
                            f"{snippet!r}")
            continue  # one report per broken region
        if node.has_error:
            todo.extend(reversed(node.children))
    return problems or ["syntax error (tree-sitter found an error it does not locate)"]
