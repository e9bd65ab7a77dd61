#!/usr/bin/env python3
"""Compares render_chat's output with reference/chat.mjs's.

Usage: compare_chat.py FAMILY CONVERSATIONS_JSON OURS_JSONL REFERENCE_JSONL

Both must agree on which conversations the template refuses; for the others
the rendered prompt and its ids must be identical. Exits 1 on a difference.
"""
import json
import sys


def main():
    family, conversations_path, ours_path, ref_path = sys.argv[1:5]
    conversations = json.load(open(conversations_path))
    ours = [json.loads(line) for line in open(ours_path)]
    ref = [json.loads(line) for line in open(ref_path)]
    if not len(ours) == len(ref) == len(conversations):
        print(f"{family} chat: {len(conversations)} conversations, ours "
              f"{len(ours)}, reference {len(ref)}")
        return 1
    failures = refused = 0
    for i, (o, r) in enumerate(zip(ours, ref)):
        if o["ok"] != r["ok"]:
            problem = f"ours ok={o['ok']} ({o.get('error', '')}), reference ok={r['ok']} ({r.get('error', '')})"
        elif not o["ok"]:
            refused += 1
            continue
        elif o["text"] != r["text"]:
            j = next((n for n, (a, b) in enumerate(zip(o["text"], r["text"])) if a != b),
                     min(len(o["text"]), len(r["text"])))
            problem = f"text differs at {j}: ours {o['text'][j:j + 40]!r} reference {r['text'][j:j + 40]!r}"
        elif o["ids"] != r["ids"]:
            problem = "ids differ"
        else:
            continue
        failures += 1
        if failures <= 5:
            print(f"{family} chat: conversation {i}: {problem}")
    if failures:
        print(f"{family} chat: {failures} of {len(conversations)} conversations differ")
        return 1
    print(f"{family} chat: {len(conversations)} conversations ({refused} refused by "
          f"both): identical prompts and ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
