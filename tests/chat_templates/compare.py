#!/usr/bin/env python3
"""Compares render_cases's output with reference/render.mjs's.

Usage: compare.py CASES_JSON OURS_JSONL REFERENCE_JSONL

Each case must have the same outcome ("ok") in both, and the same text when
it rendered; error messages need not match. Prints the first differences
(the case's name, where the texts part, both errors) and exits 1 when there
is any; else prints a one-line summary.
"""
import json
import sys


def load_lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def describe(result):
    if result["ok"]:
        return "rendered %d chars" % len(result["text"])
    return "error: %s" % result["error"][:300]


def main(argv):
    if len(argv) != 4:
        sys.stderr.write("usage: compare.py CASES_JSON OURS_JSONL "
                         "REFERENCE_JSONL\n")
        return 2
    with open(argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    ours = load_lines(argv[2])
    ref = load_lines(argv[3])
    if len(ours) != len(cases) or len(ref) != len(cases):
        print("%d cases, ours printed %d lines, the reference %d" %
              (len(cases), len(ours), len(ref)))
        return 1
    failures = 0
    rendered = 0
    for i, (case, o, r) in enumerate(zip(cases, ours, ref)):
        name = case.get("name", "case %d" % i)
        if o["ok"] and r["ok"] and o["text"] == r["text"]:
            rendered += 1
            continue
        if not o["ok"] and not r["ok"]:
            continue
        failures += 1
        if failures > 8:
            continue
        print("DIFF %s (case %d):" % (name, i))
        if o["ok"] != r["ok"]:
            print("  ours:      %s" % describe(o))
            print("  reference: %s" % describe(r))
            if o["ok"]:
                print("  our text: %r" % o["text"][:300])
            if r["ok"]:
                print("  reference text: %r" % r["text"][:300])
            continue
        a, b = o["text"], r["text"]
        j = next((n for n, (x, y) in enumerate(zip(a, b)) if x != y),
                 min(len(a), len(b)))
        print("  texts differ at char %d (lengths %d, %d)" % (j, len(a), len(b)))
        print("  ours:      %r" % a[max(0, j - 60):j + 60])
        print("  reference: %r" % b[max(0, j - 60):j + 60])
    if failures:
        print("%d of %d cases differ" % (failures, len(cases)))
        return 1
    print("%d cases identical (%d rendered, %d failed in both)" %
          (len(cases), rendered, len(cases) - rendered))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
