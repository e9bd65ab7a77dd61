#include "model/chat_template/chat_template.h"

#include <cstdint>
#include <ctime>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace longctx {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

nlohmann::json Context(absl::string_view text) {
  if (text.empty()) return nlohmann::json::object();
  nlohmann::json json = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                              /*allow_exceptions=*/false);
  EXPECT_FALSE(json.is_discarded()) << text;
  return json;
}

absl::StatusOr<std::string> Render(
    absl::string_view source,
    const nlohmann::json& context = nlohmann::json::object(),
    const ChatTemplateLimits& limits = ChatTemplateLimits()) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
      ChatTemplate::Parse(source);
  if (!tmpl.ok()) return tmpl.status();
  return (*tmpl)->Render(context, limits);
}

// A template, its context (JSON; "" for none) and the text Python Jinja
// (transformers' settings) renders: every expectation of the tables below
// was checked against jinja2 3.1.
struct RenderCase {
  const char* source;
  const char* context;
  const char* expected;
};

void ExpectRenders(std::initializer_list<RenderCase> cases) {
  for (const RenderCase& c : cases) {
    absl::StatusOr<std::string> out = Render(c.source, Context(c.context));
    ASSERT_TRUE(out.ok()) << c.source << "\n" << out.status();
    EXPECT_EQ(*out, c.expected) << "template: " << c.source;
  }
}

// A template that parses but fails to render with INVALID_ARGUMENT
// "chat template line 1: <message>".
struct ErrorCase {
  const char* source;
  const char* message;
};

void ExpectRenderErrors(std::initializer_list<ErrorCase> cases) {
  for (const ErrorCase& c : cases) {
    absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
        ChatTemplate::Parse(c.source);
    ASSERT_TRUE(tmpl.ok()) << c.source << "\n" << tmpl.status();
    absl::StatusOr<std::string> out = (*tmpl)->Render(nlohmann::json::object());
    ASSERT_FALSE(out.ok()) << c.source << " rendered " << *out;
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument)
        << c.source;
    EXPECT_EQ(out.status().message(),
              absl::StrCat("chat template line 1: ", c.message))
        << c.source;
  }
}

// A template Parse rejects with INVALID_ARGUMENT and exactly `message`.
struct ParseErrorCase {
  std::string source;
  std::string message;
};

void ExpectParseError(const ParseErrorCase& c) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
      ChatTemplate::Parse(c.source);
  ASSERT_FALSE(tmpl.ok()) << c.source.substr(0, 200);
  EXPECT_EQ(tmpl.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tmpl.status().message(), c.message) << c.source.substr(0, 200);
}

std::string Repeat(absl::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) absl::StrAppend(&out, s);
  return out;
}

TEST(ChatTemplateTest, WhitespaceLexer) {
  ExpectRenders({
      {"a  {{- 'b' -}}  c", "", "abc"},
      {"{% if true %}\nX\n{% endif %}\nY", "", "X\nY"},
      {"  {% if true %}X{% endif %}", "", "X"},
      {"a  {% if true %}X{% endif %}", "", "a  X"},
      {"  {{ 'x' }}", "", "  x"},
      {"x\n", "", "x"},
      {"x\n\n", "", "x\n"},
      {"a{# c #}b|a\n  {# own line #}\nb", "", "ab|a\nb"},
      {"  {%+ if true %}X{% endif %}", "", "  X"},
      {"{% if true +%}\nX{% endif %}", "", "\nX"},
      {"a\r\nb{% if true %}\r\nc{% endif %}\rd", "", "a\nbcd"},
      {"{{ {'a': {'b': 'c'}}.a.b }}", "", "c"},
      {"{%- if true -%}  x  {%- endif -%}", "", "x"},
      {"a\u3000\t {{- 'b' -}} \u3000c", "", "abc"},
      {"{% for x in xs %}\n  {{ x }}\n{% endfor %}", "{\"xs\": [\"a\", \"b\"]}",
       "  a\n  b\n"},
      {"{#- comment -#}  \n  x  {#- again #}", "", "x"},
      {"{% set x = {'k': {'n': 1}}%}{{ x.k.n }}", "", "1"},
  });
}

TEST(ChatTemplateTest, Literals) {
  ExpectRenders({
      {"{{ 'a\\tb' }}|{{ \"q\\\"q\" }}|{{ 'it\\'s' }}|{{ "
       "'\\x41\\u00e9\\U0001F600' }}|{{ '\\d' }}|{{ 'a' \"b\" 'c' }}",
       "", "a\tb|q\"q|it's|Aé😀|\\d|abc"},
      {"{{ 1_000 }}|{{ 0x10 }}|{{ 0o17 }}|{{ 0b101 }}|{{ 1e3 }}|{{ 2.5e-3 "
       "}}|{{ 1.0 }}",
       "", "1000|16|15|5|1000.0|0.0025|1.0"},
      {"{{ true }}|{{ True }}|{{ false }}|{{ none }}|{{ None }}", "",
       "True|True|False|None|None"},
  });
}

TEST(ChatTemplateTest, Printing) {
  ExpectRenders({
      {"{{ [1, 'a', none, true, 2.0] }}|{{ {'a': 1, 'b': [2]} }}|{{ (1,) }}|{{ "
       "() }}|{{ (1, 'x') }}",
       "", "[1, 'a', None, True, 2.0]|{'a': 1, 'b': [2]}|(1,)|()|(1, 'x')"},
      {"{{ 1e16 }}|{{ 1e15 }}|{{ 0.00001 }}|{{ 0.0001 }}|{{ 0.1 + 0.2 }}|{{ "
       "1/3 }}|{{ -0.0 }}|{{ 123456789.123 }}",
       "",
       "1e+16|1000000000000000.0|1e-05|0.0001|0.30000000000000004|0."
       "3333333333333333|-0.0|123456789.123"},
      {"{{ [\"it's\", 'a\"b', 'x\\ny', '\\u00e9'] }}", "",
       "[\"it's\", 'a\"b', 'x\\ny', 'é']"},
      {"{{ undefined_name }}|{{ xs }}", "{\"xs\": [\"a\"]}", "|['a']"},
  });
}

TEST(ChatTemplateTest, Operators) {
  ExpectRenders({
      {"{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ 7.5 // 2 }}|{{ -7.5 % 2 "
       "}}|{{ 2 ** -1 }}|{{ 2 ** 62 }}",
       "", "-4|2|-2|3.0|0.5|0.5|4611686018427387904"},
      {"{{ 'x' * 3 }}|{{ 3 * 'ab' }}|{{ [1] * 2 }}|{{ 'x' * -1 }}|{{ 10 / 4 "
       "}}|{{ 4 / 2 }}|{{ true + 1 }}|{{ 1.5 + 1 }}",
       "", "xxx|ababab|[1, 1]||2.5|2.0|2|2.5"},
      {"{{ 2 + 3 * 4 }}|{{ (2 + 3) * 4 }}|{{ -2 ** 2 }}|{{ 2 ** 3 ** 2 }}|{{ "
       "10 - 3 - 2 }}|{{ 100 / 10 / 5 }}",
       "", "14|20|4|64|5|2.0"},
      {"{{ 'a' ~ 1 ~ none ~ true ~ 1.5 }}|{{ [1] + [2] }}|{{ (1,) + (2,) }}|{{ "
       "'a' + 'b' }}",
       "", "a1NoneTrue1.5|[1, 2]|(1, 2)|ab"},
      {"{{ 1 and 'x' }}|{{ 0 and 'x' }}|{{ 0 or '' }}|{{ '' or 'y' }}|{{ not 0 "
       "}}|{{ not 'a' }}",
       "", "x|0||y|True|False"},
      {"{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 1 == 1.0 }}|{{ 1 == true }}|{{ 'a' "
       "< 'b' }}|{{ [1, 2] < [1, 3] }}|{{ none == none }}|{{ 1 != 'a' }}",
       "", "True|False|True|True|True|True|True|True"},
      {"{{ 'b' in 'abc' }}|{{ 2 in [1, 2] }}|{{ 'k' in {'k': 1} }}|{{ 'z' not "
       "in 'abc' }}|{{ [1] in [[1], 2] }}|{{ 'x' in undefined_name }}",
       "", "True|True|True|True|True|False"},
      {"{{ 'yes' if true }}|{{ 'yes' if false }}|{{ 'a' if false else 'b' if "
       "false else 'c' }}",
       "", "yes||c"},
  });
}

TEST(ChatTemplateTest, AttributesAndSubscripts) {
  ExpectRenders({
      {"{{ d.a }}|{{ d['a'] }}|{{ d.items()|list }}|{{ d['items'] }}|{{ "
       "d.keys()|list }}",
       "{\"d\": {\"a\": 1, \"items\": \"key\"}}",
       "1|1|[('a', 1), ('items', 'key')]|key|['a', 'items']"},
      {"{{ xs[-1] }}|{{ xs[5] }}|{{ xs.0 }}|{{ xs[0][1] }}|{{ 'héllo'[1] }}|{{ "
       "'a🎉b'[1] }}|{{ 'abc'[-4] }}",
       "{\"xs\": [\"ab\", \"cd\"]}", "cd||ab|b|é|🎉|"},
  });
}

TEST(ChatTemplateTest, Slicing) {
  ExpectRenders({
      {"{{ xs[1:] }}|{{ xs[:-1] }}|{{ xs[::-1] }}|{{ xs[::2] }}|{{ xs[-2::-1] "
       "}}|{{ xs[10:] }}|{{ xs[-10:1] }}|{{ xs[3:1] }}",
       "{\"xs\": [0, 1, 2, 3, 4]}",
       "[1, 2, 3, 4]|[0, 1, 2, 3]|[4, 3, 2, 1, 0]|[0, 2, 4]|[3, 2, 1, "
       "0]|[]|[0]|[]"},
      {"{{ 'héllo'[1:3] }}|{{ 'a🎉b'[::-1] }}|{{ 'abcdef'[1:5:2] }}|{{ "
       "'abc'[none:2] }}",
       "", "él|b🎉a|bd|ab"},
      {"{{ (1, 2, 3)[1:] }}", "", "(2, 3)"},
  });
}

TEST(ChatTemplateTest, StringMethods) {
  ExpectRenders({
      {"[{{ 'xxaxx'.strip('x') }}][{{ '  a  '.lstrip() }}][{{ '  a  '.rstrip() "
       "}}][{{ 'abcba'.rstrip('ab') }}][{{ '\\u3000a\\n'.strip() }}]",
       "", "[a][a  ][  a][abc][a]"},
      {"{{ 'a b  c'.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', "
       "1) }}|{{ ' a b c '.split(none, 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ ' "
       " a b c  '.rsplit(none, 1) }}|{{ ''.split() }}|{{ ''.split(',') }}",
       "",
       "['a', 'b', 'c']|['a', 'b', '', 'c']|['a', 'b,c']|['a', 'b c ']|['a,b', "
       "'c']|['  a b', 'c']|[]|['']"},
      {"{{ 'a\\nb\\r\\nc\\n'.splitlines() }}|{{ 'abc'.startswith(('x', 'a')) "
       "}}|{{ 'abc'.endswith('bc') }}|{{ 'abc'.startswith('') }}",
       "", "['a', 'b', 'c']|True|True|True"},
      {"{{ 'hello wORLD'.title() }}|{{ 'hello wORLD'.capitalize() }}|{{ "
       "'ß'.upper() }}|{{ 'ÀÉ'.lower() }}|{{ 'ﬁx'.upper() }}|{{ \"they're "
       "bill's\".title() }}",
       "", "Hello World|Hello world|SS|àé|FIX|They'Re Bill'S"},
      {"{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'abc'.replace('', '-') }}|{{ "
       "'abc'.replace('', '-', 2) }}|{{ 'a.b'.replace('.', '') }}",
       "", "bba|-a-b-c-|-a-bc|ab"},
      {"{{ '{} and {}'.format(1, 'x') }}|{{ '{1}{0}'.format('a', 'b') }}|{{ "
       "'{name}!'.format(name='n') }}|{{ '{{}}{}'.format(2) }}|{{ "
       "'{!r}'.format('q') }}",
       "", "1 and x|ba|n!|{}2|'q'"},
      {"{{ ', '.join(['a', 'b']) }}|{{ 'abcb'.find('b') }}|{{ 'abc'.find('z') "
       "}}|{{ 'abcb'.count('b') }}|{{ '123'.isdigit() }}|{{ 'ab'.isalpha() "
       "}}|{{ ' '.isspace() }}|{{ 'ab'.islower() }}|{{ 'AB'.isupper() }}|{{ "
       "''.isdigit() }}",
       "", "a, b|1|-1|2|True|True|True|True|True|False"},
  });
}

TEST(ChatTemplateTest, DictMethods) {
  ExpectRenders({
      {"{{ d.items() | list }}|{{ d.keys() | list }}|{{ d.values() | list "
       "}}|{{ d.get('a') }}|{{ d.get('z') }}|{{ d.get('z', 5) }}",
       "{\"d\": {\"a\": 1, \"b\": 2}}",
       "[('a', 1), ('b', 2)]|['a', 'b']|[1, 2]|1|None|5"},
  });
}

TEST(ChatTemplateTest, Filters) {
  ExpectRenders({
      {"[{{ '  x  ' | trim }}][{{ 'xxaxx' | trim('x') }}][{{ 5 | trim }}][{{ "
       "none | trim }}]",
       "", "[x][a][5][None]"},
      {"{% set d = {'b': [1, {'c': none}], 'a': true} %}{{ d | tojson }}|{{ d "
       "| tojson(indent=2) }}|{{ [] | tojson(indent=2) }}|{{ {} | "
       "tojson(indent=2) }}",
       "",
       "{\"b\": [1, {\"c\": null}], \"a\": true}|{\n  \"b\": [\n    1,\n    "
       "{\n      \"c\": null\n    }\n  ],\n  \"a\": true\n}|[]|{}"},
      {"{{ 'é\\n\"\\\\\\u0001' | tojson }}|{{ 'é🎉' | tojson(ensure_ascii=true) "
       "}}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ [1, 2] | "
       "tojson(separators=(',', ':')) }}|{{ 1.0 | tojson }}|{{ 2.5 | tojson "
       "}}|{{ none | tojson }}",
       "",
       "\"é\\n\\\"\\\\\\u0001\"|\"\\u00e9\\ud83c\\udf89\"|{\"a\": 2, \"b\": "
       "1}|[1,2]|1.0|2.5|null"},
      {"{{ {'a': 1} | tojson(indent='\\t') }}|{{ [1, [2]] | tojson(indent=0) "
       "}}",
       "", "{\n\t\"a\": 1\n}|[\n1,\n[\n2\n]\n]"},
      {"{{ 'hello wORLD-foo(bar [baz' | title }}|{{ 'hello wORLD' | capitalize "
       "}}|{{ 'MiXed' | upper }}{{ 'MiXed' | lower }}",
       "", "Hello World-Foo(Bar [Baz|Hello world|MIXEDmixed"},
      {"{{ 'héllo🎉' | length }}|{{ [1, 2] | length }}|{{ {'a': 1} | length "
       "}}|{{ [1, 2] | count }}",
       "", "6|2|1|2"},
      {"{{ '' | default('d') }}|{{ '' | default('d', true) }}|{{ none | "
       "default('d') }}|{{ none | d('d', boolean=true) }}|{{ x | d }}",
       "", "|d|None|d|"},
      {"{{ [1, 'a', none] | join('-') }}|{{ users | join(',', "
       "attribute='name') }}|{{ 'abc' | join('.') }}",
       "{\"users\": [{\"name\": \"a\"}, {\"name\": \"b\"}]}",
       "1-a-None|a,b|a.b.c"},
      {"{{ [1, 2] | first }}|{{ [1, 2] | last }}|{{ 'abc' | first }}|{{ 'abc' "
       "| last }}|[{{ [] | first }}]|{{ {'k': 1, 'j': 2} | first }}",
       "", "1|2|a|c|[]|k"},
      {"{{ 'abc' | list }}|{{ {'a': 1} | list }}|{{ (1, 2) | list }}|{{ [1, "
       "[2]] | string }}|{{ 1.5 | string }}|{{ none | string }}",
       "", "['a', 'b', 'c']|['a']|[1, 2]|[1, [2]]|1.5|None"},
      {"{{ '42' | int }}|{{ ' 42 ' | int }}|{{ '4.7' | int }}|{{ 'x' | int "
       "}}|{{ 'x' | int(7) }}|{{ 3.99 | int }}|{{ -3.99 | int }}|{{ true | int "
       "}}|{{ '1_0' | int }}|{{ none | int }}",
       "", "42|42|4|0|7|3|-3|1|10|0"},
      {"{{ '1.5' | float }}|{{ 3 | float }}|{{ 'x' | float }}|{{ '1e3' | float "
       "}}|{{ ' -2.5 ' | float }}|{{ 'inf' | float }}|{{ 'nan' | float }}",
       "", "1.5|3.0|0.0|1000.0|-2.5|inf|nan"},
      {"{{ 'a-b-c' | replace('-', '+') }}|{{ 'a-b-c' | replace('-', '', 1) "
       "}}|{{ 123 | replace('2', 'x') }}",
       "", "a+b+c|ab-c|1x3"},
      {"{{ d | items | list }}|{% for k, v in d | items %}{{ k }}{{ v }}{% "
       "endfor %}|{{ x | items | list }}",
       "{\"d\": {\"a\": 1, \"b\": 2}}", "[('a', 1), ('b', 2)]|a1b2|[]"},
      {"{{ users | selectattr('admin') | map(attribute='name') | list }}|{{ "
       "users | rejectattr('admin') | map(attribute='name') | list }}|{{ users "
       "| selectattr('age', 'gt', 30) | map(attribute='name') | list }}|{{ "
       "users | selectattr('name', 'equalto', 'b') | list | length }}|{{ users "
       "| selectattr('nick', 'defined') | list | length }}",
       "{\"users\": [{\"name\": \"a\", \"age\": 31, \"admin\": true}, "
       "{\"name\": \"b\", \"age\": 25, \"admin\": false}]}",
       "['a']|['b']|['a']|1|0"},
      {"{{ users | map(attribute='name') | list }}|{{ users | "
       "map(attribute='nick', default='-') | list }}|{{ ['a', 'b'] | "
       "map('upper') | list }}|{{ users | map(attribute='tags.0') | list }}|{{ "
       "[[1, 2]] | map(attribute='1') | list }}",
       "{\"users\": [{\"name\": \"a\", \"tags\": [\"t\"]}, {\"name\": \"b\", "
       "\"tags\": []}]}",
       "['a', 'b']|['-', '-']|['A', 'B']|['t', Undefined]|[2]"},
      {"{{ 'a\\nb\\n\\nc' | indent }}#{{ 'a\\nb' | indent(2, true) }}#{{ "
       "'a\\n\\nb' | indent(1, blank=true) }}#{{ 'a\\nb\\n' | indent('> ') "
       "}}#{{ 'a' | indent(first=true) }}",
       "", "a\n    b\n\n    c#  a\n  b#a\n \n b#a\n> b\n#    a"},
      {"{{ [1, 2, 3] | reverse | list }}|{{ 'abc' | reverse }}|{{ {'a': 1, "
       "'b': 2} | reverse | list }}",
       "", "[3, 2, 1]|cba|['b', 'a']"},
      {"{{ [3, 1, 2] | sort }}|{{ ['b', 'A', 'a', 'C'] | sort }}|{{ ['b', 'A', "
       "'a', 'C'] | sort(case_sensitive=true) }}|{{ [3, 1, 2] | sort(true) "
       "}}|{{ users | sort(attribute='age') | map(attribute='name') | list "
       "}}|{{ users | sort(attribute='g,age') | map(attribute='name') | list "
       "}}",
       "{\"users\": [{\"name\": \"a\", \"age\": 31, \"g\": 1}, {\"name\": "
       "\"b\", \"age\": 25, \"g\": 2}, {\"name\": \"c\", \"age\": 20, \"g\": "
       "2}]}",
       "[1, 2, 3]|['A', 'a', 'b', 'C']|['A', 'C', 'a', 'b']|[3, 2, 1]|['c', "
       "'b', 'a']|['a', 'c', 'b']"},
      {"{{ ['a', 'A', 'b', 'a'] | unique | list }}|{{ ['a', 'A'] | "
       "unique(case_sensitive=true) | list }}|{{ [1, 1.0, true, 2] | unique | "
       "list }}|{{ users | unique(attribute='g') | map(attribute='name') | "
       "list }}",
       "{\"users\": [{\"name\": \"a\", \"g\": 1}, {\"name\": \"b\", \"g\": 1}, "
       "{\"name\": \"c\", \"g\": 2}]}",
       "['a', 'b']|['a', 'A']|[1, 2]|['a', 'c']"},
      {"{{ 2.5 | round }}|{{ 3.5 | round }}|{{ 2.675 | round(2) }}|{{ 5 | "
       "round }}|{{ 2.1 | round(method='ceil') }}|{{ -2.1 | round(0, 'floor') "
       "}}|{{ 1234.5 | round(-2) }}",
       "", "2.0|4.0|2.67|5|3.0|-3.0|1200.0"},
      {"{{ -3 | abs }}|{{ -2.5 | abs }}|{{ true | abs }}", "", "3|2.5|1"},
      {"{{ {'b': 1, 'a': 2, 'C': 0} | dictsort }}|{{ {'b': 1, 'a': 2} | "
       "dictsort(by='value') }}|{{ {'b': 1, 'a': 2} | dictsort(reverse=true) "
       "}}",
       "",
       "[('a', 2), ('b', 1), ('C', 0)]|[('b', 1), ('a', 2)]|[('b', 1), ('a', "
       "2)]"},
      {"{{ [1, 2, 3] | sum }}|{{ [1.5, 2] | sum }}|{{ users | "
       "sum(attribute='age') }}|{{ [1] | sum(start=10) }}|{{ [3, 1, 2] | min "
       "}}|{{ [3, 1, 2] | max }}|{{ ['b', 'A'] | min }}|{{ users | "
       "max(attribute='age') }}|{{ [] | max }}",
       "{\"users\": [{\"age\": 3}, {\"age\": 5}]}",
       "6|3.5|8|11|1|3|A|{'age': 5}|"},
      {"{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3, 4] | "
       "reject('odd') | list }}|{{ [0, 1, '', 'a'] | select | list }}|{{ [1, "
       "2, 3] | select('gt', 1) | list }}",
       "", "[1, 3]|[2, 4]|[1, 'a']|[2, 3]"},
      {"{{ '<a href=\"x\">&\\'</a>' | escape }}|{{ '<b>' | e }}|{{ '<b>' | "
       "safe }}|{{ users | first | attr('name') }}",
       "{\"users\": [{\"name\": \"a\"}]}",
       "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;|&lt;b&gt;|<b>|"},
      {"{% filter upper %}a{{ 'b' }}c{% endfilter %}|{% filter trim | upper %} "
       " x  {% endfilter %}",
       "", "ABC|X"},
  });
}

TEST(ChatTemplateTest, Tests) {
  ExpectRenders({
      {"{{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ none is "
       "none }}{{ x is none }}",
       "{\"x\": 1}", "TrueFalseTrueTrueFalse"},
      {"{{ 'a' is string }}{{ 1 is string }}{{ 1 is number }}{{ 1.5 is number "
       "}}{{ true is number }}{{ 1 is integer }}{{ true is integer }}{{ 1.5 is "
       "float }}{{ true is boolean }}{{ 1 is boolean }}",
       "", "TrueFalseTrueTrueTrueTrueFalseTrueTrueFalse"},
      {"{{ {} is mapping }}{{ [] is mapping }}{{ [] is sequence }}{{ 'a' is "
       "sequence }}{{ {} is sequence }}{{ 1 is sequence }}{{ [] is iterable "
       "}}{{ 1 is iterable }}",
       "", "TrueFalseTrueTrueTrueFalseTrueFalse"},
      {"{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 0 is false "
       "}}{{ 3 is odd }}{{ 3 is even }}{{ 4 is even }}{{ 3.0 is odd }}",
       "", "TrueFalseTrueFalseTrueFalseTrueTrue"},
      {"{{ 6 is divisibleby(3) }}{{ 7 is divisibleby 3 }}{{ 3 is equalto(3) "
       "}}{{ 3 is eq 4 }}{{ 3 is ne 4 }}{{ 3 is lt 4 }}{{ 3 is gt 4 }}{{ 3 is "
       "ge 3 }}{{ 3 is le 2 }}{{ 2 is in [1, 2] }}{{ 'x' is in 'abc' }}",
       "", "TrueFalseTrueFalseTrueTrueFalseTrueFalseTrueFalse"},
      {"{{ none is sameas none }}{{ 1 is sameas 1 }}{{ true is sameas 1 }}{{ "
       "'ab' is lower }}{{ 'AB' is upper }}{{ 'Ab' is lower }}{{ range is "
       "callable }}{{ 'x' is callable }}",
       "", "TrueTrueFalseTrueTrueFalseTrueFalse"},
      {"{{ 1 is not none }}{{ x is not defined }}{{ 'a' is not string }}", "",
       "TrueTrueFalse"},
  });
}

TEST(ChatTemplateTest, Loops) {
  ExpectRenders({
      {"{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex "
       "}}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length "
       "}}{{ loop.cycle('o', 'e') }}{{ loop.depth }}{{ loop.depth0 }};{% "
       "endfor %}",
       "{\"xs\": [\"a\", \"b\", \"c\"]}",
       "1032TrueFalse3o10;2121FalseFalse3e10;3210FalseTrue3o10;"},
      {"{% for x in xs %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}",
       "{\"xs\": [\"a\", \"b\", \"c\"]}", "[|b][a|c][b|]"},
      {"{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }},{% endfor %}|{% for k, v "
       "in {'x': 1}.items() %}{{ k }}{{ v }}{% endfor %}|{% for a, b in ['xy', "
       "'zw'] %}{{ b }}{{ a }}{% endfor %}",
       "", "3,7,|x1|yxwz"},
      {"{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.index }}/{{ "
       "loop.length }} {% endfor %}",
       "", "21/2 42/2 "},
      {"{% for x in [] %}body{% else %}else{% endfor %}|{% for x in [1] "
       "%}body{% else %}else{% endfor %}",
       "", "else|body"},
      {"{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if "
       "x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
       "", "0134"},
      {"{% for x in ['a', 'b'] %}{% for y in [1, 2] %}{{ x }}{{ y }}{{ "
       "loop.index }}{% endfor %}{{ loop.index }};{% endfor %}",
       "", "a11a221;b11b222;"},
      {"{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}|{% for ch in 'héj' "
       "%}{{ ch }}.{% endfor %}",
       "", "ba|h.é.j."},
      {"{% for i in range(3) %}{% if i == 0 %}{% set x = 5 %}{% endif %}[{{ x "
       "}}]{% endfor %}",
       "", "[5][][]"},
      {"{% set x = 1 %}{% for i in range(2) %}{% set x = x + 1 %}{{ x }}{% "
       "endfor %}{{ x }}",
       "", "221"},
      {"{% for i in range(3) %}{{ i }}{% endfor %}|{{ range(2, 8, 3) | list "
       "}}|{{ range(5, 0, -2) | list }}|{{ range(0) | list }}|{{ range(3) | "
       "length }}",
       "", "012|[2, 5]|[5, 3, 1]|[]|3"},
  });
}

TEST(ChatTemplateTest, Set) {
  ExpectRenders({
      {"{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set c, d = [3, 4] %}{{ c }}{{ d "
       "}}",
       "", "12|34"},
      {"{% set x %}inner {{ 1 }}{% endset %}[{{ x }}]|{% set y | upper %}up{% "
       "endset %}{{ y }}|{% set ns = namespace() %}{% set ns.z %}blk{% endset "
       "%}{{ ns.z }}",
       "", "[inner 1]|UP|blk"},
      {"{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}|{{ ns "
       "}}|{% set ns.a = 'x' %}{{ ns.a }}",
       "", "12|<Namespace {'a': 1, 'b': 2}>|x"},
  });
}

TEST(ChatTemplateTest, Macros) {
  ExpectRenders({
      {"{% macro f(a, b=a ~ '!', c=none) %}{{ a }}|{{ b }}|{{ c }}{% endmacro "
       "%}{{ f('x') }};{{ f('x', 'y', 'z') }};{{ f(c=3, a=1) }};{{ f() }}",
       "", "x|x!|None;x|y|z;1|1!|3;|!|None"},
      {"{% macro v(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ v(1, "
       "2, 3, k='w') }}",
       "", "1(2, 3){'k': 'w'}"},
      {"{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * (fact(n - 1) | "
       "int) }}{% endif %}{% endmacro %}{{ fact(10) }}",
       "", "3628800"},
      {"{% macro m() %}x{% endmacro %}{% set ns = namespace(f=m) %}{{ ns.f() "
       "}}",
       "", "x"},
  });
}

TEST(ChatTemplateTest, Globals) {
  ExpectRenders({
      {"{{ dict(a=1, b='x') }}|{{ dict({'z': 1}, y=2) }}|{{ namespace(a=1).a "
       "}}",
       "", "{'a': 1, 'b': 'x'}|{'z': 1, 'y': 2}|1"},
      {"{% generation %}gen {{ 'x' }}{% endgeneration %}|{%- generation -%}  y "
       " {%- endgeneration -%}",
       "", "gen x|y"},
      {"{{ strftime_now('%Y') | length }}", "", "4"},
  });
}

TEST(ChatTemplateTest, RenderErrorsNameTheProblem) {
  ExpectRenderErrors({
      {"{{ 'a' + 1 }}", "unsupported operand type(s) for +: 'str' and 'int'"},
      {"{{ 1 / 0 }}", "division by zero"},
      {"{{ 1 // 0 }}", "integer division or modulo by zero"},
      {"{{ 'a' < 1 }}",
       "'<' not supported between instances of 'str' and 'int'"},
      {"{{ -'a' }}", "bad operand type for unary -: 'str'"},
      {"{{ 9223372036854775807 + 1 }}", "integer overflow"},
      {"{{ 2 ** 64 }}", "integer overflow"},
      {"{{ x + 1 }}",
       "unsupported operand type(s) for +: 'Undefined' and 'int'"},
      {"{% set ns = namespace(a=1) %}{{ 'a' in ns }}",
       "argument of type 'Namespace' is not iterable"},
      {"{{ 'abc'[::0] }}", "slice step cannot be zero"},
      {"{{ 'x'.nosuch() }}", "'str' object has no attribute 'nosuch' to call"},
      {"{{ x | tojson }}",
       "tojson: Object of type Undefined is not JSON serializable"},
      {"{% set ns = namespace() %}{{ ns | tojson }}",
       "tojson: Object of type Namespace is not JSON serializable"},
      {"{{ 5 | length }}", "object of type 'int' has no len()"},
      {"{{ [1, 'a'] | sort }}",
       "'<' not supported between instances of 'str' and 'int'"},
      {"{{ [[1]] | unique | list }}", "unhashable type: 'list'"},
      {"{{ x | no_such_filter }}", "unknown filter 'no_such_filter'"},
      {"{{ 1 is nosuchtest }}", "unknown test 'nosuchtest'"},
      {"{{ 'a' is odd }}", "test 'odd': 'str' is not a number"},
      {"{{ 'abc'.split('') }}", "split: empty separator"},
      {"{{ 'a'.startswith(1) }}",
       "startswith argument must be a string, not 'int'"},
      {"{{ 'x' | trim(1, 2) }}",
       "trim() takes at most 1 argument(s) (2 given)"},
      {"{{ 'x' | indent(nope=1) }}",
       "indent() got an unexpected keyword argument 'nope'"},
      {"{% for a, b in [(1, 2, 3)] %}{% endfor %}",
       "too many values to unpack (expected 2, got 3)"},
      {"{% for a, b, c in [(1, 2)] %}{% endfor %}",
       "not enough values to unpack (expected 3, got 2)"},
      {"{% for a, b in [1] %}{% endfor %}",
       "cannot unpack non-iterable int object"},
      {"{% for x in 5 %}{% endfor %}", "'int' object is not iterable"},
      {"{{ range(1.5) }}",
       "range(): 'float' object cannot be interpreted as an integer"},
      {"{{ range(1, 2, 0) }}", "range() arg 3 must not be zero"},
      {"{% set a, b = [1, 2, 3] %}",
       "too many values to unpack (expected 2, got 3)"},
      {"{% set s = 'str' %}{% set s.attr = 1 %}",
       "cannot set attribute 'attr' of 's': it is not a namespace"},
      {"{{ {1: 'a'} }}", "dict keys must be strings, not 'int'"},
      {"{{ 'x'() }}", "'expression' (a str) is not callable"},
      {"{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
       "macro 'm' takes not more than 1 argument(s)"},
      {"{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=2) }}",
       "macro 'm' takes no keyword argument 'b'"},
      {"{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, a=2) }}",
       "macro 'm' got multiple values for argument 'a'"},
  });
}

TEST(ChatTemplateTest, RenderErrorsGiveTheLine) {
  absl::StatusOr<std::string> out = Render("line one\n\n{{ 1 / 0 }}\n");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(), "chat template line 3: division by zero");
  out = Render("{% for m in messages %}\n{{ m.content + 1 }}\n{% endfor %}",
               Context(R"({"messages": [{"content": "x"}]})"));
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              StartsWith("chat template line 2: "));
}

TEST(ChatTemplateTest, RaiseExceptionGivesTheTemplatesMessage) {
  absl::StatusOr<std::string> out = Render(
      "{% if messages[0].role != 'user' %}"
      "{{ raise_exception('Conversation must start with a user message') }}"
      "{% endif %}ok",
      Context(R"({"messages": [{"role": "assistant"}]})"));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(),
            "raise_exception: Conversation must start with a user message");
}

// Where longctx deliberately differs from Python Jinja (which raises
// UndefinedError on an attribute of undefined but loops zero times over it).
TEST(ChatTemplateTest, UndefinedIsLenientExceptWhenIteratedOrCalled) {
  ExpectRenders({
      {"[{{ x }}][{{ x.y.z }}][{{ x['k'] }}][{{ x[0] }}][{{ x ~ 'a' }}]"
       "[{{ x | length }}][{{ x | default('d') }}]"
       "[{{ 'y' if x is defined else 'n' }}][{{ 'y' if x.y is defined else "
       "'n' }}][{{ x | trim }}][{{ 'a' in x }}][{{ x | items | list }}]",
       "", "[][][][][a][0][d][n][n][][False][[]]"},
      {"{{ none.attr }}|{{ 5.attr }}|{{ [1][5] }}|{{ 'ab'[9] }}", "", "|||"},
  });
  absl::StatusOr<std::string> out = Render("{% for i in tools %}{% endfor %}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(),
            "chat template line 1: cannot iterate over 'tools': it is "
            "undefined");
  out = Render("{{ tools | join }}");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("cannot iterate over an undefined value"));
  out = Render("{{ format_tools(tools) }}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(),
            "chat template line 1: 'format_tools' is undefined and cannot be "
            "called");
  out = Render("{{ message.render() }}");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("'message.render' is undefined and cannot be called"));
}

TEST(ChatTemplateTest, ParseErrorsGiveLineAndColumn) {
  const std::vector<ParseErrorCase> cases = {
      {"{% if x %}",
       "chat template line 1 column 1: unclosed 'if' block (expected "
       "'{% elif %}' or '{% else %}' or '{% endif %}')"},
      {"text\n  {% for x in xs %}{{ x }}",
       "chat template line 2 column 3: unclosed 'for' block (expected "
       "'{% else %}' or '{% endfor %}')"},
      {"a\nb {{ 1 + }}",
       "chat template line 2 column 10: expected an expression, got '}}'"},
      {"{% foo %}", "chat template line 1 column 4: unknown tag 'foo'"},
      {"{% include 'x' %}",
       "chat template line 1 column 4: '{% include %}' is not supported in "
       "chat templates"},
      {"{% extends 'base' %}",
       "chat template line 1 column 4: '{% extends %}' is not supported in "
       "chat templates"},
      {"{% call m() %}x{% endcall %}",
       "chat template line 1 column 4: '{% call %}' is not supported in chat "
       "templates"},
      {"{% endif %}",
       "chat template line 1 column 4: unexpected '{% endif %}' (no open "
       "block it closes)"},
      {"{% for x in y %}{% elif z %}{% endfor %}",
       "chat template line 1 column 20: unexpected '{% elif %}' (no open "
       "block it closes)"},
      {"{{ 'abc }}",
       "chat template line 1 column 4: unterminated string literal"},
      {"x {# y",
       "chat template line 1 column 3: unterminated comment (missing '#}')"},
      {"é\n{{ x",
       "chat template line 2 column 1: unterminated expression (missing "
       "'}}')"},
      {"{% if x",
       "chat template line 1 column 1: unterminated tag (missing "
       "'%}')"},
      {"{{ (1 }}", "chat template line 1 column 7: unexpected '}'"},
      {"{% for x in y recursive %}{% endfor %}",
       "chat template line 1 column 15: recursive for loops are not "
       "supported in chat templates"},
      {"{% break %}",
       "chat template line 1 column 4: 'break' outside a for "
       "loop"},
      {"{% for x in y %}{% macro m() %}{% continue %}{% endmacro %}"
       "{% endfor %}",
       "chat template line 1 column 35: 'continue' outside a for loop"},
      {"{% macro f(a=1, b) %}{% endmacro %}",
       "chat template line 1 column 17: non-default parameter follows a "
       "default parameter"},
      {"{{ f(a=1, 2) }}",
       "chat template line 1 column 11: positional argument follows keyword "
       "argument"},
      {"{{ f(*args) }}",
       "chat template line 1 column 6: *args and **kwargs in calls are not "
       "supported"},
      {"{{ 99999999999999999999 }}",
       "chat template line 1 column 4: integer literal too large"},
      {"{{ '\\xZZ' }}",
       "chat template line 1 column 5: truncated \\x escape in string "
       "literal"},
      {"é {{ ä }}", "chat template line 1 column 6: unexpected character 'ä'"},
      {"{{ }}",
       "chat template line 1 column 4: expected an expression, got "
       "'}}'"},
      {"{% set true = 1 %}",
       "chat template line 1 column 8: cannot assign to 'true'"},
  };
  for (const ParseErrorCase& c : cases) ExpectParseError(c);
}

TEST(ChatTemplateTest, HostileNestingFailsAtParse) {
  ExpectParseError({"{{ " + Repeat("(", 300) + "1" + Repeat(")", 300) + " }}",
                    "chat template line 1 column 132: template nested too "
                    "deeply"});
  ExpectParseError({"{{ x" + Repeat(" | trim", 300) + " }}",
                    "chat template line 1 column 4: expression nested too "
                    "deeply"});
  ExpectParseError({"{{ x" + Repeat(".a", 300) + " }}",
                    "chat template line 1 column 4: expression nested too "
                    "deeply"});
  ExpectParseError({"{{ " + Repeat("not ", 1000) + "x }}",
                    "chat template line 1 column 1024: template nested too "
                    "deeply"});
  ExpectParseError({Repeat("{% if x %}", 300) + Repeat("{% endif %}", 300),
                    "chat template line 1 column 2557: template nested too "
                    "deeply"});
  // Unbalanced brackets by the hundred thousand: an error, not a crash.
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
      ChatTemplate::Parse("{{ " + Repeat("[", 100000) + " }}");
  EXPECT_FALSE(tmpl.ok());
  tmpl = ChatTemplate::Parse(Repeat("{{ ", 100000));
  EXPECT_FALSE(tmpl.ok());
  // Nesting within the bound renders.
  EXPECT_EQ(*Render("{{ " + Repeat("(", 100) + "7" + Repeat(")", 100) + " }}"),
            "7");
}

TEST(ChatTemplateTest, LongFlatChainsAreNotDeep) {
  // 100001 terms of one precedence level make one node, not a deep tree.
  EXPECT_EQ(*Render("{{ 1" + Repeat(" + 1", 100000) + " }}"), "100001");
  EXPECT_EQ(Render("{{ ''" + Repeat(" ~ 'ab'", 50000) + " }}")->size(),
            100000u);
  EXPECT_EQ(*Render("{{ 'y' if x" + Repeat(" or x", 10000) + " else 'n' }}"),
            "n");
}

TEST(ChatTemplateTest, HugeRangeHitsMaxStepsWithoutAllocating) {
  const std::time_t start = std::time(nullptr);
  absl::StatusOr<std::string> out =
      Render("{% for i in range(10**12) %}{{ i }}{% endfor %}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("max_steps"));
  out = Render("{{ range(10**18) | length }}");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  out = Render("{{ ([1] * 10**12) | length }}");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_LE(std::time(nullptr) - start, 5);
}

TEST(ChatTemplateTest, LoopsHitMaxSteps) {
  ChatTemplateLimits limits;
  limits.max_steps = 100000;
  absl::StatusOr<std::string> out = Render(
      "{% for a in range(1000) %}{% for b in range(1000) %}"
      "{% endfor %}{% endfor %}",
      nlohmann::json::object(), limits);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(out.status().message(),
            "chat template rendering exceeded max_steps (100000)");
  // The same template under a larger budget finishes.
  limits.max_steps = 10'000'000;
  EXPECT_TRUE(Render("{% for a in range(1000) %}{% for b in range(1000) %}"
                     "{% endfor %}{% endfor %}",
                     nlohmann::json::object(), limits)
                  .ok());
  limits.max_steps = 3;
  EXPECT_EQ(
      Render("{{ a }}{{ b }}{{ c }}{{ d }}", nlohmann::json::object(), limits)
          .status()
          .code(),
      absl::StatusCode::kResourceExhausted);
}

TEST(ChatTemplateTest, OutputHitsMaxOutputBytes) {
  ChatTemplateLimits limits;
  limits.max_output_bytes = 100;
  const std::string source = "{% for i in range(n) %}0123456789{% endfor %}";
  absl::StatusOr<std::string> out =
      Render(source, Context(R"({"n": 10})"), limits);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->size(), 100u);
  out = Render(source, Context(R"({"n": 11})"), limits);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(out.status().message(),
            "chat template rendering exceeded max_output_bytes (100)");
  // Strings built on the way are bounded too.
  limits.max_output_bytes = 1 << 20;
  out = Render(
      "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
      "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
      nlohmann::json::object(), limits);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  out =
      Render("{{ ('x' * 10**12) | length }}", nlohmann::json::object(), limits);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  out = Render("{{ ('ab' | replace('', 'x' * 100000)) | length }}",
               nlohmann::json::object(), limits);
  EXPECT_TRUE(out.ok()) << out.status();
  out = Render("{{ (('a' * 300000) | replace('', 'xyz')) | length }}",
               nlohmann::json::object(), limits);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(ChatTemplateTest, SharedDataCannotBlowUp) {
  ChatTemplateLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_steps = 1'000'000;
  // Printing a list that holds one big list a thousand times, a thousand
  // times over: a billion bytes, stopped at the limits.
  absl::StatusOr<std::string> out = Render(
      "{% set a = ['x' * 1000] * 1000 %}{% set b = [a] * 1000 %}"
      "{{ b | string | length }}",
      nlohmann::json::object(), limits);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  out = Render(
      "{% set a = [[1] * 1000] * 1000 %}{% set b = [a] * 1000 %}"
      "{{ b == b }}",
      nlohmann::json::object(), limits);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  out = Render(
      "{% set a = [[1] * 1000] * 1000 %}{% set b = [a] * 1000 %}"
      "{{ b | tojson | length }}",
      nlohmann::json::object(), limits);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(ChatTemplateTest, MacroRecursionHitsMaxDepth) {
  absl::StatusOr<std::string> out =
      Render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(out.status().message(),
            "chat template rendering exceeded max_depth (200)");
  // A bounded recursion within the depth renders.
  EXPECT_EQ(*Render("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% else %}"
                    "done{% endif %}{% endmacro %}{{ f(20) }}"),
            "done");
  ChatTemplateLimits limits;
  limits.max_depth = 5;
  out = Render(
      "{% for a in [1] %}{% for b in [1] %}{% for c in [1] %}"
      "{{ [[[[a]]]] }}{% endfor %}{% endfor %}{% endfor %}",
      nlohmann::json::object(), limits);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(ChatTemplateTest, CyclicAndDeepDataFailCleanly) {
  absl::StatusOr<std::string> out =
      Render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("nested deeper"));
  out = Render(
      "{% set ns = namespace(l=[]) %}{% for i in range(2000) %}"
      "{% set ns.l = [ns.l] %}{% endfor %}");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("nested too deeply"));
  // Chains through loop objects and bound methods are bounded as well.
  out = Render(
      "{% set ns = namespace(l=none) %}{% for i in range(2000) %}"
      "{% for x in [ns.l, 0] %}{% if loop.last %}{% set ns.l = loop %}"
      "{% endif %}{% endfor %}{% endfor %}");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("nested too deeply"));
  out = Render(
      "{% set ns = namespace(d={}) %}{% for i in range(2000) %}"
      "{% set ns.d = {'m': ns.d.get} %}{% endfor %}");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("nested too deeply"));
  // A long chain of namespaces built through containers recorded while
  // they were shallow: renders, and is released without deep recursion.
  out = Render(
      "{% set root = namespace(x=none) %}{% for i in range(100000) %}"
      "{% set n = namespace() %}{% set l = [n] %}{% set n.x = root.x %}"
      "{% set root.x = l %}{% endfor %}done");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "done");
  // Context data nested too deeply.
  nlohmann::json deep = nlohmann::json::array();
  for (int i = 0; i < 2000; ++i) deep = nlohmann::json::array({deep});
  out = Render("{{ x | length }}", {{"x", deep}});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, ContextMustBeAnObject) {
  EXPECT_EQ(*Render("plain", nlohmann::json()), "plain");
  absl::StatusOr<std::string> out = Render("x", nlohmann::json::array());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateTest, StrftimeNowIsUtc) {
  const std::time_t now = std::time(nullptr);
  std::tm tm;
  gmtime_r(&now, &tm);
  char year[16];
  std::strftime(year, sizeof(year), "%Y", &tm);
  EXPECT_EQ(*Render("{{ strftime_now('%Y') }}"), year);
  EXPECT_EQ(*Render("{{ strftime_now('') }}"), "");
}

constexpr absl::string_view kChatMl =
    "{%- for message in messages %}\n"
    "    {{- '<|im_start|>' + message.role + '\\n' }}\n"
    "    {%- if message.content is string %}\n"
    "        {{- message.content | trim }}\n"
    "    {%- else %}\n"
    "        {%- for part in message.content if part.type == 'text' %}\n"
    "            {{- part.text }}\n"
    "        {%- endfor %}\n"
    "    {%- endif %}\n"
    "    {%- if message.tool_calls is defined %}\n"
    "        {%- for call in message.tool_calls %}\n"
    "<tool_call>{{ call.function | tojson }}</tool_call>\n"
    "        {%- endfor %}\n"
    "    {%- endif %}\n"
    "    {{- '<|im_end|>\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n";

TEST(ChatTemplateTest, RendersAChatPrompt) {
  absl::StatusOr<std::string> out = Render(kChatMl, Context(R"({
      "messages": [
        {"role": "system", "content": "  Be brief.  "},
        {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                     {"type": "image"},
                                     {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]}
      ],
      "add_generation_prompt": true})"));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi there<|im_end|>\n"
            "<|im_start|>assistant\n<tool_call>{\"arguments\": {\"x\": 1}, "
            "\"name\": \"f\"}</tool_call><|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, RenderIsThreadSafe) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
      ChatTemplate::Parse(kChatMl);
  ASSERT_TRUE(tmpl.ok());
  const nlohmann::json context = Context(
      R"({"messages": [{"role": "user", "content": "hello"}],
          "add_generation_prompt": true})");
  const std::string expected = *(*tmpl)->Render(context);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        absl::StatusOr<std::string> out = (*tmpl)->Render(context);
        if (!out.ok() || *out != expected) ++mismatches[t];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// Random mutations of a realistic template: Parse and Render must return a
// status (OK, INVALID_ARGUMENT or RESOURCE_EXHAUSTED) and never crash or
// hang. Deterministic (fixed seed).
TEST(ChatTemplateTest, MutatedTemplatesNeverCrash) {
  static constexpr absl::string_view kPieces[] = {
      "{{",         "}}",
      "{%",         "%}",
      "{#",         "#}",
      "{%-",        "-%}",
      "{{-",        "-}}",
      "(",          ")",
      "[",          "]",
      "{",          "}",
      "'",          "\"",
      "\\",         "|",
      ".",          ",",
      ":",          "-",
      "+",          "*",
      "**",         "//",
      "~",          " if ",
      " else ",     " for x in ",
      " endfor ",   " endif ",
      " set ",      " macro ",
      " endmacro ", " in ",
      " not ",      " and ",
      " or ",       " is ",
      "loop",       "loop.index",
      "namespace(", "range(10**9)",
      "messages",   "message",
      "tools",      "x",
      "ns.a",       "== ",
      "| tojson",   "| trim",
      "| join",     "[::-1]",
      "[1:]",       "raise_exception(",
      "'\\u00e9'",  "0",
      "1e308",      "\n",
      " ",          "\t",
      "é",          "🎉"};
  const std::string base(kChatMl);
  const nlohmann::json contexts[] = {
      Context(R"({"messages": [{"role": "user", "content": "hi"},
                               {"role": "assistant", "content": "yo",
                                "tool_calls": [{"function": {"name": "f"}}]}],
                  "add_generation_prompt": true, "tools": [{"a": 1}]})"),
      Context(R"({"messages": "not a list", "x": {"y": [1, 2]}})"),
      nlohmann::json::object(),
  };
  ChatTemplateLimits limits;
  limits.max_steps = 20000;
  limits.max_output_bytes = 1 << 16;
  limits.max_depth = 64;
  std::mt19937 rng(20240726);
  int parsed = 0;
  for (int iteration = 0; iteration < 20000; ++iteration) {
    std::string source = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !source.empty(); ++e) {
      const size_t at = rng() % (source.size() + 1);
      switch (rng() % 4) {
        case 0:  // delete a run
          source.erase(at, rng() % 12);
          break;
        case 1:  // insert a piece
          source.insert(at, std::string(kPieces[rng() % std::size(kPieces)]));
          break;
        case 2: {  // duplicate a run
          const std::string run = source.substr(at, rng() % 40);
          source.insert(at, run);
          break;
        }
        default:  // replace a byte with any byte
          if (at < source.size()) source[at] = static_cast<char>(rng() % 256);
      }
    }
    absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
        ChatTemplate::Parse(source);
    if (!tmpl.ok()) {
      EXPECT_EQ(tmpl.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(tmpl.status().message()),
                  StartsWith("chat template line "));
      continue;
    }
    ++parsed;
    for (const nlohmann::json& context : contexts) {
      absl::StatusOr<std::string> out = (*tmpl)->Render(context, limits);
      if (!out.ok()) {
        EXPECT_TRUE(out.status().code() == absl::StatusCode::kInvalidArgument ||
                    out.status().code() == absl::StatusCode::kResourceExhausted)
            << out.status();
      } else {
        EXPECT_LE(out->size(), limits.max_output_bytes);
      }
    }
  }
  // The mutations leave a fair share of templates that parse.
  EXPECT_GT(parsed, 2000);
}

}  // namespace
}  // namespace longctx
