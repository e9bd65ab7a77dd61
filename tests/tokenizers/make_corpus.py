#!/usr/bin/env python3
"""Writes the awkward-text corpus of //tests/tokenizers:reference_test.

Usage: make_corpus.py OUT_JSON [SEED]
       make_corpus.py --chat OUT_JSON [SEED]   (conversations for chat.mjs)

A JSON array of base64 strings (any bytes): hand-picked cases (whitespace runs,
newlines, digits, contractions, CJK, emoji with joiners, combining marks,
invalid UTF-8, special-token strings inside user text, code), seeded random
mixtures of those character classes, and a long mixed document. Characters
stay within blocks assigned long ago, so that the Unicode versions of the two
implementations (PCRE2 / ICU here, Node's ICU there) agree; U+FEFF and U+0085
are left out (the reference's built-in \\s differs from Rust's on them).
"""
import base64
import json
import random
import sys

SPECIALS = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
            "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>",
            "</think>", "<s>", "</s>", "<unk>", "[INST]", "[/INST]"]

CASES = [
    "", " ", "  ", "\n", "\n\n\n", "\t", " \t \n ", "a", "hello world",
    "Hello  world   and    more     spaces", "  leading spaces",
    "trailing spaces   ", "line one\nline two\r\nline three\n\n\nline six",
    "tabs\tbetween\t\twords", "1", "12", "123", "1234", "12345678901234567890",
    "3.14159 2,718 1e-9 0x7FFF -42 +7 100%", "year 2026-12-07 at 01:24:56",
    "I'll, you're, he's, we've, I'm, they'd, DON'T, It'S, WE'LL",
    "'s 't 're", "naïve café résumé Ångström Straße",
    "e\u0301 a\u0300 o\u0302 n\u0303 (combining marks)",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01 \u957f\u6587\u6863\u3002",
    "\u3053\u3093\u306b\u3061\u306f \u30ab\u30bf\u30ab\u30ca",
    "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "emoji \U0001F600\U0001F680 \U0001F469\u200D\U0001F4BB family \U0001F468\u200D\U0001F469\u200D\U0001F467 flag \U0001F1EB\U0001F1F7",
    "\u00a0non-breaking\u00a0spaces\u3000ideographic\u2003em",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n",
    "int main() {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v[0] != 0 ? 1 : 0;\n}\n",
    "{\"json\": [1, 2.5, null, true], \"nested\": {\"k\": \"v\"}}",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "https://example.com/path?q=1&r=two#frag user@example.org",
    "!!!??? ... --- *** ### ~~~ ``` ''' \"\"\"",
    "a" * 300, "ab" * 200, " " * 100 + "x", "\n" * 50 + "y",
    "\u00e9" * 50, "\u4e2d" * 80, "\U0001F600" * 30,
]
for special in SPECIALS:
    CASES += [special, "text " + special + " more", special + special,
              "x" + special + "y", " " + special + " ", special[:-1],
              "<" + special]

INVALID = [b"\xff", b"a\xffb", b"\xc3\x28", b"\xe4\xbd", b"ok\xe4\xbd",
           b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\x80\x80\x80",
           b"\xc0\xaf overlong", b"mixed \xe4\xbd\xa0 and \xe4\xbd"]

CLASSES = [
    (0x20, 0x7E), (0x20, 0x7E), (0x30, 0x39), (0xA1, 0xFF), (0x100, 0x17F),
    (0x391, 0x3C9), (0x410, 0x44F), (0x4E00, 0x9FA5), (0x3041, 0x3096),
    (0xAC00, 0xD7A3), (0x1F300, 0x1F5FF), (0x660, 0x669), (0x300, 0x36F),
]
SPACES = [" ", " ", " ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u3000", "   \n"]


def random_text(rng, length):
    out = []
    for _ in range(length):
        r = rng.random()
        if r < 0.2:
            out.append(rng.choice(SPACES))
        elif r < 0.23:
            out.append(rng.choice(SPECIALS))
        else:
            lo, hi = rng.choice(CLASSES)
            out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def conversations(rng):
    """Conversations for the chat templates: alternating turns (what every
    family accepts), with and without a system turn and the generation
    prompt, awkward contents, and a few that break the alternation (which
    the Mistral-style templates refuse)."""
    contents = CASES[:60] + [random_text(rng, rng.randint(0, 80)) for _ in range(60)]
    out = []
    for n in range(90):
        turns = []
        if n % 3 == 0:
            turns.append({"role": "system", "content": rng.choice(contents)})
        for t in range(1 + n % 7):
            turns.append({"role": "user" if t % 2 == 0 else "assistant",
                          "content": rng.choice(contents)})
        out.append({"messages": turns, "add_generation_prompt": n % 2 == 0})
    for n in range(6):
        out.append({"messages": [{"role": "user", "content": "a"},
                                 {"role": "user", "content": "b"}][: 2 - n % 2] +
                    [{"role": "assistant", "content": "c"}] * (n % 3),
                    "add_generation_prompt": True})
    return out


def main():
    if sys.argv[1] == "--chat":
        rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 23)
        with open(sys.argv[2], "w") as f:
            json.dump(conversations(rng), f, ensure_ascii=False)
        return
    out_path = sys.argv[1]
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 17)
    entries = [c.encode("utf-8") for c in CASES] + INVALID
    for _ in range(400):
        entries.append(random_text(rng, rng.randint(1, 60)).encode("utf-8"))
    # Random bytes, valid or not.
    for _ in range(40):
        entries.append(bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 24))))
    long_doc = "\n\n".join(random_text(rng, 400) + " " + " ".join(CASES[:40])
                           for _ in range(25))
    entries.append(long_doc.encode("utf-8"))
    with open(out_path, "w") as f:
        json.dump([base64.b64encode(e).decode("ascii") for e in entries], f)


if __name__ == "__main__":
    main()
