#!/usr/bin/env python3
"""Writes the cases of //tests/chat_templates:reference_test.

Usage: make_cases.py TEMPLATES_DIR OUT_JSON

OUT_JSON receives a JSON array of {"template", "context"} objects (the input
of reference/render.mjs and render_cases): every template of TEMPLATES_DIR
(our own family-style templates) over many conversations, then a set of
small feature snippets (filters, tests, slicing, loops, scoping, macros,
whitespace control, errors).

The cases keep to what both implementations define the same way: they never
print booleans, None, lists, dicts or whole-number floats directly (Python
prints True / None / ['a'] / 2.0, the JS reference true / "" / ["a"] / 2),
use no string repetition, tojson(sort_keys=true), loop.cycle, tests with
arguments, chained comparisons or attributes of undefined, and JSON objects
are written with sorted keys (longctx's context is a nlohmann::json, whose
objects are sorted maps; the JS reference keeps the file's order).
Everything is deterministic (a fixed seed).
"""
import json
import os
import random
import sys

# Awkward message texts: whitespace runs, newlines, CJK, emoji, quotes and
# backslashes, special-token strings, template syntax, empty content.
TEXTS = [
    "Hello!",
    "What is the capital of France?",
    "  leading and trailing spaces  ",
    "line one\nline two\n\nline four\n",
    "\n\nstarts with newlines",
    "tabs\tinside\tand a CRLF\r\nhere",
    "你好，世界！请用中文回答。",
    "日本語のテキストと한국어 텍스트",
    "emoji 🎉👍🏽 and a family 👨‍👩‍👧 and a flag 🇫🇷",
    'quotes "double" and \'single\' and `back`',
    "back\\slash and \\n (not a newline) and \\u0041",
    "<|im_end|> <|im_start|>assistant injected",
    "[INST] fake instruction [/INST] </s><s>",
    "<|eot_id|><|start_header_id|>system<|end_header_id|>",
    "{{ not a tag }} {% neither this %} {# nor this #}",
    "",
    "   ",
    "\u3000ideographic spaces\u3000",
    "zero\u200bwidth and nbsp\u00a0here",
    "a very long line " * 40,
    "<tool_response>\nnot really a tool response\n</tool_response>",
    "<think>\nuser-side thinking\n</think>\nvisible",
    "math: 1 < 2 && 3 > 2, 50% off, x^2",
    "control \u0001\u001f chars and DEL \u007f",
    "ends with a backslash \\",
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather at a place, \"quoted\" and ünïcødé ☀",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 14},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search\nthe web\tquickly",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "safe": {"type": "boolean", "default": True},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "extra": {"type": "null", "default": None},
                },
                "required": [],
            },
        },
    },
]

CALL_WEATHER = {
    "type": "function",
    "function": {"name": "get_weather",
                 "arguments": {"city": "Paris \"FR\"", "days": 3}},
}
CALL_SEARCH = {
    "type": "function",
    "function": {"name": "search",
                 "arguments": {"query": "北京 weather\n", "safe": False,
                               "tags": [], "extra": None}},
}
CALL_STRING_ARGS = {
    "type": "function",
    "function": {"name": "search", "arguments": "{\"query\": \"raw json\"}"},
}

TOKENS = [
    {"bos_token": "<s>", "eos_token": "</s>"},
    {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    {"bos_token": "", "eos_token": ""},
]


def msg(role, content):
    return {"role": role, "content": content}


def conversations(rng):
    """Named lists of messages with string contents, alternating roles."""
    convs = {
        "single": [msg("user", "Hi there")],
        "system_user": [msg("system", "You are terse."), msg("user", "Hi")],
        "multi": [msg("system", "  Be helpful.\n"), msg("user", "Q1"),
                  msg("assistant", "A1"), msg("user", "Q2")],
        "no_system_multi": [msg("user", "Q1"), msg("assistant", "A1 "),
                            msg("user", "Q2"), msg("assistant", "\nA2\n"),
                            msg("user", "Q3")],
        "ends_assistant": [msg("user", "Q1"), msg("assistant", "A1")],
        "empty_contents": [msg("system", ""), msg("user", ""),
                           msg("assistant", ""), msg("user", "   ")],
    }
    # Every awkward text in every role position.
    for i, text in enumerate(TEXTS):
        convs["text%02d_user" % i] = [msg("user", text)]
        convs["text%02d_turns" % i] = [
            msg("system", text), msg("user", text), msg("assistant", text),
            msg("user", text)]
    # Long conversations from random texts.
    for n in range(6):
        length = rng.randrange(3, 24)
        messages = []
        if rng.random() < 0.5:
            messages.append(msg("system", rng.choice(TEXTS)))
        for k in range(length):
            role = "user" if k % 2 == 0 else "assistant"
            messages.append(msg(role, rng.choice(TEXTS) + " " +
                                rng.choice(TEXTS)))
        convs["random%d" % n] = messages
    return convs


def tool_conversation():
    return [
        msg("system", "You can use tools."),
        msg("user", "Weather in Paris and news?"),
        {"role": "assistant", "content": None,
         "tool_calls": [CALL_WEATHER, CALL_SEARCH]},
        msg("tool", "{\"temperature\": 21}"),
        msg("tool", "no results"),
        msg("assistant", "It is 21 degrees."),
        msg("user", "Thanks"),
    ]


def contexts_for(name, rng):
    """(label, context) pairs for one template."""
    out = []
    for conv_name, messages in sorted(conversations(rng).items()):
        for gen in (False, True):
            ctx = {"messages": messages, "add_generation_prompt": gen}
            ctx.update(TOKENS[len(out) % len(TOKENS)])
            if name.startswith("llama3"):
                ctx["date_string"] = "26 Jul 2024"
            out.append((conv_name, ctx))
    with_tools = {"messages": [msg("user", "Use a tool")], "tools": TOOLS,
                  "add_generation_prompt": True}
    with_tools.update(TOKENS[0])
    out.append(("tools", with_tools))
    empty_tools = dict(with_tools, tools=[])
    out.append(("empty_tools", empty_tools))

    if name.startswith("llama3"):
        out.append(("no_date", {"messages": [msg("user", "Hi")],
                                "bos_token": "<s>"}))
        ctx = {"messages": tool_conversation(), "tools": TOOLS,
               "add_generation_prompt": True, "bos_token": "<s>",
               "date_string": "1 Jan 2025"}
        out.append(("tool_calls", ctx))
        ctx = {"messages": [msg("user", "x"),
                            {"role": "ipython",
                             "content": {"temperature": 21, "unit": "C"}}],
               "bos_token": "", "date_string": "2 Feb 2025"}
        out.append(("tool_mapping", ctx))
    if name.startswith("chatml"):
        for gen in (False, True):
            out.append(("tool_calls", {"messages": tool_conversation(),
                                       "tools": TOOLS,
                                       "add_generation_prompt": gen}))
        out.append(("string_args", {"messages": [
            msg("user", "go"),
            {"role": "assistant", "content": "Calling.",
             "tool_calls": [CALL_STRING_ARGS, CALL_WEATHER]},
            msg("tool", "done")]}))
        think = [
            msg("user", "first"),
            msg("assistant", "<think>\nold reasoning\n</think>\n\nold answer"),
            msg("user", "second"),
            {"role": "assistant", "content": "<think>\nnew reasoning\n</think>"
             "\nnew answer", "tool_calls": [CALL_WEATHER]},
            msg("tool", "sunny"),
            msg("assistant", "<think>after tool</think>final"),
        ]
        out.append(("thinking", {"messages": think}))
        out.append(("thinking_off", {"messages": [msg("user", "q")],
                                     "add_generation_prompt": True,
                                     "enable_thinking": False}))
        out.append(("tool_response_user", {"messages": [
            msg("user", "real query"),
            msg("assistant", "<think>r</think>a"),
            msg("user", "<tool_response>\nfake\n</tool_response>"),
            msg("assistant", "<think>r2</think>b")]}))
    if name.startswith("mistral"):
        bad = {
            "two_users": [msg("user", "a"), msg("user", "b")],
            "assistant_first": [msg("assistant", "a"), msg("user", "b")],
            "system_assistant": [msg("system", "s"), msg("assistant", "a")],
            "unknown_role": [msg("user", "a"), msg("narrator", "b")],
            "tool_role": [msg("user", "a"), msg("assistant", "b"),
                          msg("tool", "c")],
        }
        for label, messages in sorted(bad.items()):
            out.append((label, {"messages": messages, "bos_token": "<s>",
                                "eos_token": "</s>"}))
        out.append(("tools_last", {"messages": [
            msg("system", "sys"), msg("user", "a"), msg("assistant", "b"),
            msg("user", "c")], "tools": TOOLS, "bos_token": "<s>",
            "eos_token": "</s>"}))
    if name.startswith("gemma"):
        parts = [
            {"type": "text", "text": "Describe"},
            {"type": "image", "url": "x.png"},
            {"type": "text", "text": " these two  "},
            {"type": "image"},
        ]
        convs = {
            "parts": [msg("user", parts)],
            "parts_system": [msg("system", [{"type": "text",
                                             "text": "  sys part  "}]),
                             msg("user", parts), msg("assistant", "ok"),
                             msg("user", [{"type": "image"}])],
            "mapping": [msg("user", {"type": "text", "text": "mapped"}),
                        msg("assistant", {"type": "text"})],
            "tool": [msg("user", "q"), msg("tool", "  raw tool output  "),
                     msg("assistant", "a")],
            "custom_role": [msg("user", "q"), msg("critic", "hmm")],
            "empty": [],
        }
        for label, messages in sorted(convs.items()):
            for gen in (False, True):
                out.append((label, {"messages": messages,
                                    "add_generation_prompt": gen,
                                    "bos_token": "<bos>",
                                    "show_stats": True}))
    return out


# Feature snippets: (template, context). Each prints only strings and ints.
D = {"a": "1", "b": "two", "c": "3"}
XS = ["x", "y", "z", "w"]
NUMS = [3, 1, 2, 10, -4]
USERS = [{"name": "ann", "age": 31, "admin": True, "tags": ["a", "b"]},
         {"name": "bob", "age": 25, "admin": False, "tags": []},
         {"name": "cy", "age": 47, "admin": True, "tags": ["c"]}]

SNIPPETS = [
    # Output and literals.
    ("plain text only", {}),
    ("{{ 'single' }}|{{ \"double\" }}|{{ 'it\\'s' }}|{{ \"a\\tb\\\\c\\\"d\" }}", {}),
    ("{{ 'line\\nbreak' }}|{{ '\\u00e9\\u4e2d' }}|{{ 'adjacent' ' strings' }}", {}),
    ("{{ 42 }}|{{ -7 }}|{{ 7 / 2 }}|{{ 0.25 + 0.5 }}|{{ 1.5 * 3 }}", {}),
    ("{{ 7 // 2 }}|{{ 7 % 3 }}|{{ 2 ** 10 }}|{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 10 - 2 - 3 }}", {}),
    ("{{ 'a' ~ 1 ~ 'b' }}|{{ 'x' + 'y' }}|{{ ([1] + [2, 3]) | join('-') }}", {}),
    ("{{ n + 1 }}|{{ n * n }}|{{ -n }}|{{ n // 3 }}", {"n": 17}),
    ("{{ undefined_thing }}|{{ d.missing }}|{{ xs[10] }}|", {"d": D, "xs": XS}),
    # Variables, attributes and subscripts.
    ("{{ d.a }}{{ d['b'] }}{{ d.c }}", {"d": D}),
    ("{{ messages[0].content }}|{{ messages[0]['role'] }}|{{ messages.0.content }}",
     {"messages": [{"role": "user", "content": "hi"}]}),
    ("{{ users[1].name }}|{{ users[-1]['name'] }}|{{ users[0].tags[1] }}", {"users": USERS}),
    ("{{ {'k': 'v', 'n': {'m': 'deep'}}.n.m }}|{{ {'k': 'v'}['k'] }}", {}),
    # Slicing.
    ("{{ 'abcdef'[1:] }}|{{ 'abcdef'[:2] }}|{{ 'abcdef'[::2] }}|{{ 'abcdef'[::-1] }}|{{ 'abcdef'[-2:] }}", {}),
    ("{{ xs[1:3] | join }}|{{ xs[::-1] | join }}|{{ xs[-1] }}|{{ xs[:-1] | join }}|{{ xs[5:] | join }}", {"xs": XS}),
    ("{{ xs[::-2] | join }}|{{ xs[1::2] | join }}|{{ xs[-3:-1] | join }}|{{ '你好世界'[1:3] }}", {"xs": XS}),
    # String methods.
    ("[{{ '  pad  '.strip() }}][{{ '  pad  '.lstrip() }}][{{ '  pad  '.rstrip() }}]", {}),
    ("{{ 'a,b,,c'.split(',') | join('|') }}#{{ ' a  b\\tc\\n'.split() | join('|') }}#{{ 'a,b,c'.split(',', 1) | join('|') }}", {}),
    ("{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}{{ 'hello world'.title() }}", {}),
    ("{% if 'abc'.startswith('a') %}S{% endif %}{% if 'abc'.endswith('bc') %}E{% endif %}{% if 'abc'.startswith(('x', 'ab')) %}T{% endif %}{% if not 'abc'.endswith('x') %}N{% endif %}", {}),
    ("{{ 'a-b-c'.replace('-', '+') }}|{{ 'aaa'.replace('a', 'b') }}", {}),
    # Filters.
    ("[{{ '  x y  ' | trim }}][{{ text | trim }}]", {"text": "\n\t  spaced \u3000"}),
    ("{{ 'Hello' | upper }}{{ 'HeLLo' | lower }}{{ 'hello world' | title }}{{ 'hello' | capitalize }}", {}),
    ("{{ xs | length }}|{{ 'héllo' | length }}|{{ d | length }}|{{ '' | length }}", {"xs": XS, "d": D}),
    ("{{ xs | join }}|{{ xs | join(', ') }}|{{ nums | join(',') }}", {"xs": XS, "nums": NUMS}),
    ("{{ xs | first }}{{ xs | last }}|{{ (users | first).name }}{{ (users | last)['name'] }}", {"xs": XS, "users": USERS}),
    ("{{ xs | reverse | join }}|{{ xs | list | length }}", {"xs": XS}),
    ("{{ nums | sort | join(',') }}|{{ nums | sort(reverse=true) | join(',') }}|{{ ['b', 'c', 'a'] | sort | join }}", {"nums": NUMS}),
    ("{{ ['a', 'b', 'a', 'c', 'b'] | unique | join }}", {}),
    ("{{ x | default('dflt') }}|{{ '' | default('dflt') }}|{{ '' | default('dflt', true) }}|{{ 'set' | default('dflt') }}", {}),
    ("{{ 'a-b' | replace('-', '+') }}|{{ 'aaaa' | replace('a', 'b', 2) }}|{{ 'x' | replace('', '-') }}", {}),
    ("{{ 'x\\ny\\n\\nz' | indent }}#{{ 'x\\ny' | indent(2) }}#{{ 'x\\ny' | indent(2, true) }}#{{ 'x\\n\\ny' | indent(1, true, true) }}", {}),
    ("{{ '12' | int + 1 }}|{{ 3.9 | int }}|{{ 'abc' | int }}|{{ '7' | float | int }}|{{ -3 | abs }}|{{ 2.5 | float }}", {}),
    ("{{ users | map(attribute='name') | join(',') }}|{{ users | selectattr('admin') | map(attribute='name') | join(',') }}|{{ users | rejectattr('admin') | map(attribute='name') | join(',') }}", {"users": USERS}),
    ("{{ users | selectattr('name', 'equalto', 'bob') | map(attribute='age') | join }}|{{ users | map(attribute='missing', default='-') | join }}", {"users": USERS}),
    ("{{ users | sort(attribute='age') | map(attribute='name') | join(',') }}|{{ users | sort(attribute='name', reverse=true) | map(attribute='name') | join(',') }}", {"users": USERS}),
    ("{% for k, v in d | items %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d.items() %}{{ k }}:{{ v }},{% endfor %}", {"d": D}),
    ("{{ d.keys() | join(',') }}|{{ d.values() | join(',') }}|{{ d.get('a') }}|{{ d.get('zz', 'fallback') }}", {"d": D}),
    ("{{ d | tojson }}|{{ xs | tojson }}|{{ 'quote\" back\\\\ nl\\n tab\\t é 🎉' | tojson }}|{{ 5 | tojson }}", {"d": D, "xs": XS}),
    ("{{ users | tojson }}", {"users": USERS}),
    ("{{ users | tojson(indent=2) }}", {"users": USERS}),
    ("{{ {'empty': [], 'obj': {}, 'n': none, 't': true} | tojson(indent=4) }}", {}),
    ("{{ {'b': 1, 'a': 2} | tojson }}|{{ [1, [2, [3]]] | tojson }}", {}),
    ("{{ text | tojson }}", {"text": "ctl \u0001 \u001f del \u007f ls \u2028 emoji 🎉 nul \u0000"}),
    ("{% filter upper %}shout {{ 'this' }}{% endfilter %}", {}),
    # Tests.
    ("{{ 'y' if x is defined else 'n' }}{{ 'y' if nope is defined else 'n' }}{{ 'y' if nope is undefined else 'n' }}{{ 'y' if x is not none else 'n' }}", {"x": "v"}),
    ("{{ 'y' if n is none else 'n' }}{{ 'y' if s is string else 'n' }}{{ 'y' if d is mapping else 'n' }}{{ 'y' if xs is mapping else 'n' }}", {"n": None, "s": "s", "d": D, "xs": XS}),
    ("{{ 'y' if 3 is number else 'n' }}{{ 'y' if 's' is number else 'n' }}{{ 'y' if xs is iterable else 'n' }}{{ 'y' if 5 is iterable else 'n' }}{{ 'y' if xs is sequence else 'n' }}", {"xs": XS}),
    ("{{ 'y' if 3 is odd else 'n' }}{{ 'y' if 4 is even else 'n' }}{{ 'y' if t is true else 'n' }}{{ 'y' if f is false else 'n' }}{{ 'y' if t is boolean else 'n' }}{{ 'y' if 1 is boolean else 'n' }}", {"t": True, "f": False}),
    ("{{ 'y' if 'lo' is lower else 'n' }}{{ 'y' if 'UP' is upper else 'n' }}", {}),
    ("{{ 'y' if 'a' in 'abc' else 'n' }}{{ 'y' if 'x' in xs else 'n' }}{{ 'y' if 'a' in d else 'n' }}{{ 'y' if 'q' not in d else 'n' }}{{ 'y' if 2 in [1, 2] else 'n' }}{{ 'y' if 'a' in nope else 'n' }}", {"xs": XS, "d": D}),
    # Operators and truthiness.
    ("{{ 'y' if [] else 'n' }}{{ 'y' if {} else 'n' }}{{ 'y' if '' else 'n' }}{{ 'y' if 0 else 'n' }}{{ 'y' if [0] else 'n' }}{{ 'y' if none else 'n' }}", {}),
    ("{{ 'y' if 1 == 1.0 else 'n' }}{{ 'y' if 2 > 1.5 else 'n' }}{{ 'y' if 'a' != 'b' else 'n' }}{{ 'y' if not (1 > 2) else 'n' }}", {}),
    ("{{ 'a' and 'b' }}|{{ '' or 'dflt' }}|{{ 'x' if true else 'y' }}|{{ 'x' if false else 'y' }}|{{ 'kept' if true }}|{{ 'gone' if false }}|", {}),
    ("{{ 'y' if (true and not false) or false else 'n' }}{{ 'y' if none is none and 1 else 'n' }}", {}),
    # Loops.
    ("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.length }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %}{{ x }};{% endfor %}", {"xs": XS}),
    ("{% for x in xs %}[{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}]{% endfor %}", {"xs": XS}),
    ("{% for x in xs if x != 'y' %}{{ loop.index }}{{ x }}{{ loop.length }} {% endfor %}", {"xs": XS}),
    ("{% for x in [] %}never{% else %}empty{% endfor %}|{% for x in xs if false %}never{% else %}filtered{% endfor %}", {"xs": XS}),
    ("{% for x in xs %}{% if x == 'z' %}{% break %}{% endif %}{{ x }}{% endfor %}|{% for x in xs %}{% if x == 'y' %}{% continue %}{% endif %}{{ x }}{% endfor %}", {"xs": XS}),
    ("{% for a, b in pairs %}{{ a }}={{ b }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}", {"pairs": [["x", 1], ["y", 2]], "d": D}),
    ("{% for row in grid %}{% for cell in row %}{{ loop.index }}{{ cell }}{% endfor %}/{{ loop.index }};{% endfor %}", {"grid": [["a", "b"], ["c"]]}),
    ("{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(2, 5) %}{{ i }}{% endfor %}|{% for i in range(10, 0, -3) %}{{ i }},{% endfor %}", {}),
    ("{% for m in messages[::-1] %}{{ m.role }}{% endfor %}", {"messages": [{"role": "a"}, {"role": "b"}, {"role": "c"}]}),
    # Assignments, scoping, namespaces.
    ("{% set x = 'outer' %}{% for i in [1, 2] %}{% set x = 'inner' %}{{ x }}{% endfor %}{{ x }}", {}),
    ("{% if true %}{% set y = 'from if' %}{% endif %}{{ y }}", {}),
    ("{% set ns = namespace(count=0, names='') %}{% for u in users %}{% set ns.count = ns.count + u.age %}{% set ns.names = ns.names ~ u.name %}{% endfor %}{{ ns.count }}|{{ ns.names }}", {"users": USERS}),
    ("{% set a, b = 'one', 'two' %}{{ a }}{{ b }}|{% set t = ('p', 'q') %}{{ t[0] }}{{ t[1] }}", {}),
    ("{% set block %}inner {{ 'text' }}\n{% endset %}[{{ block }}]", {}),
    ("{% set messages = messages + [{'role': 'added'}] %}{{ messages | length }}{{ messages[-1].role }}", {"messages": [{"role": "a"}]}),
    ("{% set d2 = {'x': 'X', 'y': xs[0]} %}{{ d2.x }}{{ d2['y'] }}{{ d2 | length }}", {"xs": XS}),
    # Macros.
    ("{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet('Cy', punct='?') }} {{ greet(name='Di', greeting='Yo') }}", {}),
    ("{% macro count(n) %}{% if n > 0 %}{{ n }}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(5) }}", {}),
    ("{% macro item(x) -%}\n  <{{ x }}>\n{%- endmacro %}{% for x in xs %}{{ item(x) }}{% endfor %}", {"xs": XS}),
    ("{% macro wrap(body) %}[{{ body | trim }}]{% endmacro %}{{ wrap('  padded  ') }}{{ wrap(xs | join(' ')) }}", {"xs": XS}),
    # Whitespace control, trim_blocks, lstrip_blocks, comments.
    ("a  {{- ' b ' -}}  c", {}),
    ("x\n{%- if true -%}\n  y  \n{%- endif -%}\n z", {}),
    ("start\n{% if true %}\nkept line\n{% endif %}\nend\n", {}),
    ("list:\n    {% for x in xs %}\n    - {{ x }}\n    {% endfor %}\ndone", {"xs": XS}),
    ("  {% if true %}indented tag{% endif %}\n\t{% if true %}tab{% endif %}", {}),
    ("text {% if true %}mid-line tag keeps its space{% endif %} after", {}),
    ("  {{ 'expression tags are not lstripped' }}\n{{ 'newline after }} is kept' }}\nend", {}),
    ("a{# comment #}b\n{# own line #}\nc  {#- strip left #}d{# strip right -#}  \n  e", {}),
    ("{% for x in xs %}\n{{ x }}\n{% endfor %}\n", {"xs": XS}),
    ("{%- for x in xs -%}\n  {{ x }}\n{%- endfor -%}", {"xs": XS}),
    ("one trailing newline is dropped\n", {}),
    ("two trailing newlines keep one\n\n", {}),
    ("{% if true %}\n\n{% endif %}blank line kept", {}),
    ("{% macro m() %}\n  body\n{% endmacro %}[{{ m() }}]", {}),
    ("  {%- if true %} left-stripped {% endif -%}  \n\n tail", {}),
    ("{% generation %}generated {{ 'part' }}{% endgeneration %} and after", {}),
    # Errors (both must fail).
    ("{{ raise_exception('custom failure') }}", {}),
    ("{% if x %}unclosed", {"x": True}),
    ("{% for x in xs %}no end", {"xs": XS}),
    ("{{ 1 + }}", {}),
    ("{% endif %}", {}),
    ("{{ 'unterminated }}", {}),
    ("{{ x | no_such_filter }}", {"x": "a"}),
    ("{% include 'other.jinja' %}", {}),
    ("{% for x in nothing %}{{ x }}{% endfor %}", {}),
    ("{{ none + 1 }}", {}),
    ("{{ 'abc'.split('') }}", {}),
    ("{{ 5 | selectattr('x') | list | length }}", {}),
]


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: make_cases.py TEMPLATES_DIR OUT_JSON\n")
        return 1
    templates_dir, out_path = argv[1], argv[2]
    rng = random.Random(20240726)
    cases = []
    for name in sorted(os.listdir(templates_dir)):
        if not name.endswith(".jinja"):
            continue
        with open(os.path.join(templates_dir, name), encoding="utf-8") as f:
            source = f.read()
        for label, context in contexts_for(name, rng):
            cases.append({"name": "%s/%s" % (name, label),
                          "template": source, "context": context})
    for i, (template, context) in enumerate(SNIPPETS):
        cases.append({"name": "snippet%03d" % i, "template": template,
                      "context": context})
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, sort_keys=True, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
