#!/usr/bin/env python3
"""Runs the command blocks of docs/*.md (and README.md) that can run here.

A command block is a fenced block whose info string is sh, bash or shell.
Each runs, in document order, in one bash session per document (so a block
may use the variables an earlier block of the same document set), in a
scratch directory where hack/, charts/ and manifests/ point at the
repository, with the daemon binary, kubectl and helm on PATH and, when the
caller has one, KUBECONFIG of a real apiserver. Every simple command that
fails (bash's ERR trap) fails its block.

A block that cannot run here carries, on the line right above its fence:

    <!-- docs-test: skip: WHY -->

Skipped blocks are never silent: each is printed with its reason, and the
set of skipped blocks must be exactly tests/chart/docs-skipped.txt, the
reviewed list ("FILE: FIRST LINE OF THE BLOCK -- WHY"), or the run fails.
A block whose first line is "# runbook: NAME STEP" is a rotation runbook
step that tests/runbook/run.sh runs against the apiserver with workers
asking: it is skipped here for that reason, and listed like the others.

usage: docs_blocks.py [--list]      (--list: print the blocks and exit)
Ends with "N passed, M failed"; exits 1 on any failure.
"""

import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REVIEWED = os.path.join(ROOT, "tests", "chart", "docs-skipped.txt")
MARK = re.compile(r"^\s*<!--\s*docs-test:\s*skip:\s*(.+?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
RUN_INFO = {"sh", "bash", "shell"}


def blocks(path):
    lines = open(path).read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(2):
            i += 1
            continue
        indent, info = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        body = [l[len(indent):] if l.startswith(indent) else l for l in lines[i + 1:j]]
        prev = i - 1
        while prev >= 0 and lines[prev].strip() == "":
            prev -= 1
        mark = MARK.match(lines[prev]) if prev >= 0 else None
        if info in RUN_INFO:
            skip = mark.group(1) if mark else None
            first = next((l.strip() for l in body if l.strip()), "")
            if skip is None and first.startswith("# runbook:"):
                skip = "a rotation runbook step, run by make test-runbook (tests/runbook/run.sh)"
            out.append({"line": i + 1, "body": "\n".join(body), "skip": skip})
        i = j + 1
    return out


def key(rel, b):
    first = next((l.strip() for l in b["body"].split("\n") if l.strip()), "")
    return "%s: %s" % (rel, first)


def run_document(rel, bs, scratch, env):
    """Runs the blocks of one document in one bash; returns {line: (ok, output)}."""
    script = ["set -u", "trap 'echo \"docs-test: failed ($?): $BASH_COMMAND\" >&2; __bad=1' ERR"]
    for b in bs:
        if b["skip"]:
            continue
        script += ["__bad=0", "echo '::block %d'" % b["line"], b["body"],
                   "echo \"::end %d $__bad\"" % b["line"]]
    p = subprocess.run(["bash", "-c", "\n".join(script)], cwd=scratch, env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=600)
    res, cur, buf = {}, None, []
    for line in p.stdout.split("\n"):
        m = re.match(r"^::block (\d+)$", line)
        e = re.match(r"^::end (\d+) (\d)$", line)
        if m:
            cur, buf = int(m.group(1)), []
        elif e and cur == int(e.group(1)):
            res[cur] = (e.group(2) == "0", "\n".join(buf))
            cur = None
        elif cur is not None:
            buf.append(line)
    if cur is not None:  # the shell died inside a block (exit, set -e)
        res[cur] = (False, "\n".join(buf))
    return res


def main():
    docs = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + [os.path.join(ROOT, "README.md")]
    found = [(os.path.relpath(d, ROOT), blocks(d)) for d in docs]
    if "--list" in sys.argv:
        for rel, bs in found:
            for b in bs:
                print("%s:%d %s%s" % (rel, b["line"], "SKIP " if b["skip"] else "", key(rel, b)))
        return 0
    passed = failed = 0
    skipped = set()
    for rel, bs in found:
        for b in bs:
            if b["skip"]:
                skipped.add("%s -- %s" % (key(rel, b), b["skip"]))
                print("skipped: %s:%d %s (%s)" % (rel, b["line"], key(rel, b).split(": ", 1)[1], b["skip"]))
    reviewed = set()
    if os.path.exists(REVIEWED):
        reviewed = {l.rstrip("\n") for l in open(REVIEWED) if l.strip() and not l.startswith("#")}
    for s in sorted(skipped - reviewed):
        print("FAIL: skipped but not in tests/chart/docs-skipped.txt: %s" % s)
        failed += 1
    for s in sorted(reviewed - skipped):
        print("FAIL: in tests/chart/docs-skipped.txt but not marked skip in the docs: %s" % s)
        failed += 1
    if skipped == reviewed:
        passed += 1
        print("PASS: the %d skipped blocks are exactly the reviewed list" % len(skipped))

    bindir = os.environ.get("TCS_BIN_DIR", os.path.join(ROOT, "build"))
    path = [bindir]
    for tool in ("KUBECTL", "HELM"):
        if os.environ.get(tool):
            path.append(os.path.dirname(os.environ[tool]))
    env = dict(os.environ, PATH=":".join(path + [os.environ.get("PATH", "")]))
    with tempfile.TemporaryDirectory(prefix="tcs-docs-") as scratch:
        for d in ("hack", "charts", "manifests", "tests"):
            os.symlink(os.path.join(ROOT, d), os.path.join(scratch, d))
        ci = os.environ.get("CI") == "true"
        for rel, bs in found:
            if not os.environ.get("KUBECONFIG"):
                # No apiserver from the caller: blocks that talk to one cannot run.
                for b in bs:
                    if not b["skip"] and re.search(r"\b(kubectl|helm)\b", b["body"]):
                        b["skip"] = "no apiserver"
                        name = "%s:%d %s" % (rel, b["line"], key(rel, b).split(": ", 1)[1])
                        if ci:
                            failed += 1
                            print("FAIL: %s: no apiserver (CI=true: a missing prerequisite is a failure)" % name)
                        else:
                            print("SKIPPED: %s: no apiserver (run by make test-chart with one)" % name)
            todo = [b for b in bs if not b["skip"]]
            if not todo:
                continue
            res = run_document(rel, bs, scratch, env)
            for b in todo:
                ok, out = res.get(b["line"], (False, "(not reached)"))
                name = "%s:%d %s" % (rel, b["line"], key(rel, b).split(": ", 1)[1])
                if ok:
                    passed += 1
                    print("PASS: %s" % name)
                else:
                    failed += 1
                    print("FAIL: %s" % name)
                    for l in out.strip().split("\n")[-8:]:
                        print("    " + l)
    print("docs-blocks: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
