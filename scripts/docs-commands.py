#!/usr/bin/env python3
"""Runs every shell command block (```sh) of the README and docs/, and checks every relative
link they make. A block preceded by `<!-- not run here: REASON -->` is not run: REASON must
name the test or script (an existing path) that runs its commands. Exit 1 on the first block
that fails or on a broken link.

    python3 scripts/docs-commands.py          # run them
    python3 scripts/docs-commands.py --list   # only list them and check the links
"""

import glob
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ["README.md", *sorted(glob.glob("docs/*.md", root_dir=ROOT)),
         "ffi/README.md", "python/README.md"]


def blocks(path):
    lines = open(os.path.join(ROOT, path)).read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            note = re.match(r"<!-- not run here: (.*) -->", lines[k].strip()) if k >= 0 else None
            yield i + 1, "\n".join(lines[i + 1:j]), note.group(1) if note else None
            i = j
        i += 1


def broken_links(path):
    text = open(os.path.join(ROOT, path)).read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    base = os.path.dirname(os.path.join(ROOT, path))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = target.split("#", 1)[0]
        if not os.path.exists(os.path.join(base, file)):
            yield target


def main():
    only_list = "--list" in sys.argv
    failed = False
    for path in FILES:
        for target in broken_links(path):
            print(f"{path}: broken link {target}")
            failed = True
    for path in FILES:
        for line, cmd, note in blocks(path):
            where = f"{path}:{line}"
            if note is not None:
                named = [w for w in re.findall(r"[\w./-]+\.(?:rs|sh|py)|\.ci/run", note)
                         if os.path.exists(os.path.join(ROOT, w))]
                if not named:
                    print(f"{where}: 'not run here' names no existing test or script: {note}")
                    failed = True
                else:
                    print(f"{where}: not run here ({note})")
                continue
            if only_list:
                print(f"{where}: would run")
                continue
            print(f"=== {where}\n{cmd}", flush=True)
            start = time.time()
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=ROOT, timeout=1200)
            print(f"=== {where}: exit {r.returncode} after {time.time() - start:.0f} s", flush=True)
            if r.returncode != 0:
                return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
