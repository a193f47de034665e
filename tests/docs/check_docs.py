#!/usr/bin/env python3
"""The documentation checked against the repository and the command-line tool.

    check_docs.py ROOT CLI

ROOT is the repository, CLI the built `subset-router` (target/release/subset-router). Checks:

  links     every relative link `[text](target)` in every Markdown file of the repository
            (target/, .cache/, .git/ and dist/ skipped) points at a file or directory inside
            ROOT; a `#anchor` into a Markdown file (or the file itself) names one of its
            headings (GitHub's slugs) or an explicit `<a id="…">`.
  json      every ```json block of README.md and docs/*.md is a whole plugin configuration and
            passes `subset-router validate -`, unless the line before its fence is
            `<!-- fragment -->` (a part of a configuration, or another JSON file): those are
            skipped and counted.
  yaml      every ```yaml block of every Markdown file parses (PyYAML, multi-document).
  console   every ```console block of README.md and docs/*.md: each `$ subset-router …` line is
            run from ROOT (`subset-router` is CLI; the line goes through bash, so pipes work)
            and its standard output and error together must equal the lines below it, up to
            the next `$ ` line. In an expected line, `<any>` matches any text (a time that
            changes from run to run). `simulate` must be given `--seed`. A `$ ` line that does
            not start with `subset-router` is an error.

Exit 1 on any failure; the last line counts what was checked.
"""
import json
import os
import re
import subprocess
import sys
import unicodedata

import yaml

SKIP_DIRS = {".git", "target", ".cache", "dist", "node_modules"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([A-Za-z0-9_+-]*)[^\n]*$")
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
FRAGMENT_MARK = "<!-- fragment -->"

failures = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")
    print(f"FAIL {where}: {msg}")


def markdown_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS)
        for f in sorted(files):
            if f.lower().endswith(".md"):
                out.append(os.path.join(d, f))
    return out


def blocks(text):
    """(language, first line number, body lines, line before the fence) for each fenced block,
    and the text with every block blanked (lines kept, for link line numbers)."""
    lines = text.split("\n")
    found, outside = [], []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            outside.append(lines[i])
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        prev = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        start = i
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$", lines[i]):
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            i += 1
        found.append((lang, start + 1, body, prev))
        outside.extend([""] * (i + 1 - start))
        i += 1
    return found, "\n".join(outside)


def slug(heading):
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to '-'."""
    h = re.sub(r"`([^`]*)`", r"\1", heading)
    h = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", h)
    h = re.sub(r"<[^>]+>", "", h)
    h = h.strip().lower()
    out = []
    for ch in h:
        cat = unicodedata.category(ch)
        if ch in " -_" or cat[0] in "LN" or cat == "Mn":
            out.append("-" if ch == " " else ch)
    return "".join(out)


_anchor_cache = {}


def anchors(path):
    if path not in _anchor_cache:
        with open(path, encoding="utf-8") as f:
            _, text = blocks(f.read())
        seen, result = {}, set()
        for line in text.split("\n"):
            m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m:
                s = slug(m.group(1))
                n = seen.get(s, 0)
                seen[s] = n + 1
                result.add(s if n == 0 else f"{s}-{n}")
            for a in re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line):
                result.add(a)
        _anchor_cache[path] = result
    return _anchor_cache[path]


def check_links(root, path, text):
    rel = os.path.relpath(path, root)
    n = 0
    for lineno, line in enumerate(text.split("\n"), 1):
        line = re.sub(r"`[^`]*`", "", line)  # links are not read inside code spans
        for m in LINK.finditer(line):
            target = m.group(3)
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # https:, mailto:, …: not checked here
            n += 1
            where = f"{rel}:{lineno}"
            file_part, _, anchor = target.partition("#")
            if file_part.startswith("/"):
                fail(where, f"link {target!r} is absolute; use a path relative to the file")
                continue
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if os.path.commonpath([os.path.realpath(dest), os.path.realpath(root)]) != os.path.realpath(root):
                fail(where, f"link {target!r} leaves the repository")
                continue
            if not os.path.exists(dest):
                fail(where, f"link {target!r}: {os.path.relpath(dest, root)} does not exist")
                continue
            if anchor and dest.endswith(".md") and os.path.isfile(dest):
                if anchor not in anchors(dest):
                    fail(where, f"link {target!r}: no heading #{anchor} in {os.path.relpath(dest, root)}")
    return n


def run_cli(root, cli, cmd):
    env = dict(os.environ)
    bindir = os.path.join(root, ".cache", "docs-check-bin")
    os.makedirs(bindir, exist_ok=True)
    link = os.path.join(bindir, "subset-router")
    if not os.path.islink(link) or os.readlink(link) != cli:
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(cli, link)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["COLUMNS"] = "100"
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=root, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def line_matches(expected, got):
    if "<any>" not in expected:
        return expected == got
    pattern = ".*".join(re.escape(part) for part in expected.split("<any>"))
    return re.fullmatch(pattern, got) is not None


def check_console(root, cli, rel, lang_start, body):
    commands = []  # (line number, command, expected lines)
    for k, line in enumerate(body):
        if line.startswith("$ "):
            commands.append([lang_start + 1 + k, line[2:], []])
        elif commands:
            commands[-1][2].append(line)
        elif line.strip():
            fail(f"{rel}:{lang_start + 1 + k}", "console block: output before the first `$ ` line")
    n = 0
    for lineno, cmd, expected in commands:
        where = f"{rel}:{lineno}"
        if not cmd.startswith("subset-router"):
            fail(where, f"console block: {cmd!r} is not a subset-router command (use ```sh for other commands)")
            continue
        if re.search(r"\bsimulate\b", cmd) and "--seed" not in cmd and "--help" not in cmd:
            fail(where, f"{cmd!r}: simulate needs --seed in the docs (its output must be reproducible)")
            continue
        while expected and not expected[-1].strip():
            expected.pop()
        n += 1
        _, out = run_cli(root, cli, cmd)
        got = [l.rstrip() for l in out.rstrip("\n").split("\n")] if out.strip() else []
        want = [l.rstrip() for l in expected]
        if len(got) != len(want) or not all(line_matches(w, g) for w, g in zip(want, got)):
            diff = next((i for i, (w, g) in enumerate(zip(want, got)) if not line_matches(w, g)),
                        min(len(want), len(got)))
            fail(where, f"`{cmd}` printed something else than the docs show (first difference at "
                        f"output line {diff + 1}):\n    docs: {want[diff] if diff < len(want) else '<end>'!r}\n"
                        f"    now:  {got[diff] if diff < len(got) else '<end>'!r}")
    return n


def main(root, cli):
    root = os.path.realpath(root)
    cli = os.path.realpath(cli)
    counts = dict(files=0, links=0, json=0, fragments=0, yaml=0, commands=0)
    for path in markdown_files(root):
        rel = os.path.relpath(path, root)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        counts["files"] += 1
        found, outside = blocks(text)
        counts["links"] += check_links(root, path, outside)
        user_doc = rel == "README.md" or rel.startswith("docs" + os.sep)
        for lang, start, body, prev in found:
            where = f"{rel}:{start}"
            src = "\n".join(body)
            if lang == "yaml" or lang == "yml":
                counts["yaml"] += 1
                try:
                    list(yaml.safe_load_all(src))
                except yaml.YAMLError as e:
                    fail(where, f"yaml block does not parse: {str(e).splitlines()[0]}")
            elif lang == "json" and user_doc:
                if prev == FRAGMENT_MARK:
                    counts["fragments"] += 1
                    continue
                counts["json"] += 1
                try:
                    json.loads(src)
                except ValueError as e:
                    fail(where, f"json block is not JSON ({e}); mark a fragment with {FRAGMENT_MARK} before its fence")
                    continue
                p = subprocess.run([cli, "validate", "-"], input=src.encode(), cwd=root,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                if p.returncode != 0:
                    msg = p.stdout.decode("utf-8", "replace").strip().replace("\n", "\n    ")
                    fail(where, f"json block is not a valid plugin configuration:\n    {msg}")
            elif lang == "console" and user_doc:
                counts["commands"] += check_console(root, cli, rel, start, body)
    summary = (f"{counts['files']} Markdown files: {counts['links']} relative links, "
               f"{counts['json']} plugin configurations validated ({counts['fragments']} marked fragments skipped), "
               f"{counts['yaml']} yaml blocks parsed, {counts['commands']} subset-router commands re-run")
    if failures:
        print(f"FAIL: {len(failures)} problem(s); {summary}")
        return 1
    print(f"docs: ok; {summary}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
