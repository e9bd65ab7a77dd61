#!/usr/bin/env python3
"""Compares tokenize_corpus's output with reference/encode.mjs's.

Usage: compare.py FAMILY CORPUS_JSON OURS_JSONL REFERENCE_JSONL

Every field must be equal on every entry, and "served" (the gateway's
tokenizer) must equal "ids". Prints the first differences with the entry's
text and exits 1 when there is any; else prints a one-line summary.
"""
import base64
import json
import sys


def main():
    family, corpus_path, ours_path, ref_path = sys.argv[1:5]
    corpus = json.load(open(corpus_path))
    ours = [json.loads(line) for line in open(ours_path)]
    ref = [json.loads(line) for line in open(ref_path)]
    if len(ours) != len(corpus) or len(ref) != len(corpus):
        print(f"{family}: {len(corpus)} entries, ours {len(ours)}, reference {len(ref)}")
        return 1
    failures = 0
    tokens = 0
    for i, (o, r) in enumerate(zip(ours, ref)):
        tokens += len(r["ids"])
        problems = [k for k in ("ids", "ids_special", "decoded", "decoded_skip")
                    if o[k] != r[k]]
        if o["served"] != o["ids"]:
            problems.append("served")
        if not problems:
            continue
        failures += 1
        if failures <= 5:
            text = base64.b64decode(corpus[i])
            print(f"{family}: entry {i} {text[:200]!r}: differs in {problems}")
            for k in problems:
                if k == "served":
                    print(f"  served {o['served'][:40]}")
                    continue
                a, b = o[k], r[k]
                j = next((n for n, (x, y) in enumerate(zip(a, b)) if x != y),
                         min(len(a), len(b)))
                print(f"  {k}: first difference at {j}: ours {a[j:j + 12]!r} reference {b[j:j + 12]!r}")
    if failures:
        print(f"{family}: {failures} of {len(corpus)} entries differ")
        return 1
    print(f"{family}: {len(corpus)} entries, {tokens} tokens: identical ids, "
          f"special-token ids and decoded text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
