// The Jinja interpreter feature by feature, then its errors and limits. The expected outputs of
// the feature table are what Python Jinja2 renders in transformers' configuration
// (tests/golden/chat/render_jinja2.py), so each row is a parity check against the reference.
#include <gtest/gtest.h>

#include <string>

#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace {

struct FeatureCase {
  const char* name;
  const char* source;
  const char* context;
  const char* expected;
};

// clang-format off
const FeatureCase kFeatureCases[] = {
    {"text passes through",
     R"J(Hello, world!)J",
     R"J({})J",
     R"J(Hello, world!)J"},
    {"trailing newline dropped",
     R"J(a
)J",
     R"J({})J",
     R"J(a)J"},
    {"only one trailing newline dropped",
     R"J(a

)J",
     R"J({})J",
     R"J(a
)J"},
    {"crlf normalized",
     R"J(a
b
c)J",
     R"J({})J",
     R"J(a
b
c)J"},
    {"variable",
     R"J({{ name }})J",
     R"J({"name": "Ada"})J",
     R"J(Ada)J"},
    {"undefined prints empty",
     R"J([{{ missing }}])J",
     R"J({})J",
     R"J([])J"},
    {"none true false print like python",
     R"J({{ none }} {{ true }} {{ False }} {{ None }})J",
     R"J({})J",
     R"J(None True False None)J"},
    {"numbers print like python",
     R"J({{ 1 }} {{ 1.0 }} {{ 2.5 }} {{ 1e20 }} {{ 1_000 }} {{ 0.1 + 0.2 }} {{ 7 / 2 }} {{ 6 / 2 }})J",
     R"J({})J",
     R"J(1 1.0 2.5 1e+20 1000 0.30000000000000004 3.5 3.0)J"},
    {"containers print like python",
     R"J({{ [1, 'a', none, true] }} {{ {'k': 'v', 'n': [1]} }} {{ (1,) }} {{ (1, 2) }} {{ () }})J",
     R"J({})J",
     R"J([1, 'a', None, True] {'k': 'v', 'n': [1]} (1,) (1, 2) ())J"},
    {"string escapes",
     R"J({{ 'tab\there' }}|{{ "q\"uote" }}|{{ 'it\'s' }}|{{ '\u00e9\x41' }}|{{ 'back\\slash' }}|{{ 'keep\d' }})J",
     R"J({})J",
     R"J(tab	here|q"uote|it's|éA|back\slash|keep\d)J"},
    {"adjacent string literals concatenate",
     R"J({{ 'a' 'b' "c" }})J",
     R"J({})J",
     R"J(abc)J"},
    {"comment removed",
     R"J(a{# comment #}b)J",
     R"J({})J",
     R"J(ab)J"},
    {"whitespace control",
     R"J(a  {{- ' b ' -}}  c {%- if true %} d {% endif -%}   e)J",
     R"J({})J",
     R"J(a b c d e)J"},
    {"comment whitespace control",
     R"J(a   {#- x -#}   b)J",
     R"J({})J",
     R"J(ab)J"},
    {"trim_blocks drops newline after block",
     R"J({% if true %}
yes
{% endif %}
after)J",
     R"J({})J",
     R"J(yes
after)J"},
    {"lstrip_blocks strips indentation before block",
     R"J(<ul>
    {% for x in [1, 2] %}
    <li>{{ x }}</li>
    {% endfor %}
</ul>)J",
     R"J({})J",
     R"J(<ul>
    <li>1</li>
    <li>2</li>
</ul>)J"},
    {"lstrip_blocks leaves expressions alone",
     R"J(    {{ 'x' }}
  {# c #}
y)J",
     R"J({})J",
     R"J(    x
y)J"},
    {"plus disables lstrip",
     R"J(  {%+ if true %}x{% endif %})J",
     R"J({})J",
     R"J(  x)J"},
    {"if elif else",
     R"J({% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %},{% endfor %})J",
     R"J({})J",
     R"J(one,two,many,)J"},
    {"for loop variables",
     R"J({% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %})J",
     R"J({})J",
     R"J(1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;)J"},
    {"for previtem nextitem cycle",
     R"J({% for x in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('odd', 'even') }};{% endfor %})J",
     R"J({})J",
     R"J(-2-odd;1-3-even;2--odd;)J"},
    {"for else",
     R"J({% for x in [] %}x{% else %}empty{% endfor %})J",
     R"J({})J",
     R"J(empty)J"},
    {"for with condition",
     R"J({% for x in range(10) if x is odd %}{{ x }}{{ loop.index }},{% endfor %})J",
     R"J({})J",
     R"J(11,32,53,74,95,)J"},
    {"for over dict and items",
     R"J({% for k in d %}{{ k }}{% endfor %};{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %})J",
     R"J({"d": {"b": 1, "a": 2}})J",
     R"J(ba;b=1,a=2,)J"},
    {"for with filter on iterable",
     R"J({% for m in messages | selectattr('role', 'equalto', 'user') %}{{ m.content }}{% endfor %})J",
     R"J({"messages": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "u2"}]})J",
     R"J(u1u2)J"},
    {"nested loops and outer loop",
     R"J({% for a in [1, 2] %}{% set outer = loop %}{% for b in [1, 2] %}{{ outer.index }}{{ loop.index }} {% endfor %}{% endfor %})J",
     R"J({})J",
     R"J(11 12 21 22 )J"},
    {"break and continue",
     R"J({% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %})J",
     R"J({})J",
     R"J(0134)J"},
    {"set does not leak out of loop",
     R"J({% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = i * 10 %}{{ x }};{% endfor %}{{ x }})J",
     R"J({})J",
     R"J(110;120;1)J"},
    {"namespace carries state out of loop",
     R"J({% set ns = namespace(total=0, names=[]) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }})J",
     R"J({})J",
     R"J(6)J"},
    {"block set",
     R"J({% set greeting %}Hello {{ name }}!{% endset %}[{{ greeting }}])J",
     R"J({"name": "Bo"})J",
     R"J([Hello Bo!])J"},
    {"block set with filter",
     R"J({% set shout | upper %}hey {{ name }}{% endset %}{{ shout }})J",
     R"J({"name": "you"})J",
     R"J(HEY YOU)J"},
    {"tuple unpacking set",
     R"J({% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c, d = [3, 4] %}{{ c }}{{ d }})J",
     R"J({})J",
     R"J(1234)J"},
    {"macro with defaults",
     R"J({% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }} [{{ greet() }}])J",
     R"J({})J",
     R"J(Hi A! Hi B? Hi C. [Hi !])J"},
    {"macro sees globals",
     R"J({% set suffix = '>' %}{% macro m(x) %}{{ x }}{{ suffix }}{% endmacro %}{{ m(1) }})J",
     R"J({})J",
     R"J(1>)J"},
    {"recursive macro",
     R"J({% macro count(n) %}{{ n }}{% if n > 0 %}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }})J",
     R"J({})J",
     R"J(3210)J"},
    {"call block",
     R"J({% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}inside{% endcall %})J",
     R"J({})J",
     R"J([inside])J"},
    {"filter block",
     R"J({% filter upper %}shout {{ 'this' }}{% endfilter %})J",
     R"J({})J",
     R"J(SHOUT THIS)J"},
    {"with block",
     R"J({% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}])J",
     R"J({})J",
     R"J(3[])J"},
    {"raw block",
     R"J({% raw %}{{ not rendered }}{% endraw %})J",
     R"J({})J",
     R"J({{ not rendered }})J"},
    {"tests",
     R"J({{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ n is none }}{{ x is string }}{{ 1 is number }}{{ 1.5 is float }}{{ 1 is integer }}{{ d is mapping }}{{ l is iterable }}{{ l is sequence }}{{ true is boolean }}{{ true is true }}{{ false is false }}{{ 0 is false }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 'ab' is lower }}{{ x is not none }}{{ 2 is in [1, 2] }}{{ d is not mapping }})J",
     R"J({"x": "s", "n": null, "d": {}, "l": [1]})J",
     R"J(TrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrueTrueTrueTrueFalse)J"},
    {"in and not in",
     R"J({{ 'a' in 'cat' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 'z' not in 'cat' }}{{ 3 not in [1] }})J",
     R"J({})J",
     R"J(TrueTrueTrueTrueTrue)J"},
    {"comparisons",
     R"J({{ 1 < 2 }}{{ 2 <= 2 }}{{ 'b' > 'a' }}{{ 1 == 1.0 }}{{ 1 != 2 }}{{ [1, 2] < [1, 3] }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ true == 1 }})J",
     R"J({})J",
     R"J(TrueTrueTrueTrueTrueTrueTrueFalseTrue)J"},
    {"boolean operators return operands",
     R"J({{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ none or [] }}|{{ not 0 }}|{{ not 'a' }})J",
     R"J({})J",
     R"J(x|b||[]|True|False)J"},
    {"arithmetic",
     R"J({{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** 3 ** 2 }} {{ 7.5 // 2 }} {{ -3 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** -1 }} {{ 10 - 2.5 }})J",
     R"J({})J",
     R"J(3 -4 1 2 1024 64 3.0 -3 7 9 0.5 7.5)J"},
    {"string and list operators",
     R"J({{ 'a' + 'b' }} {{ 'x' * 3 }} {{ [1] + [2] }} {{ [0] * 2 }} {{ 'n' ~ 1 ~ none ~ missing }})J",
     R"J({})J",
     R"J(ab xxx [1, 2] [0, 0] n1None)J"},
    {"ternary",
     R"J({{ 'yes' if x else 'no' }} {{ 'yes' if not x else 'no' }} [{{ 'only' if false }}])J",
     R"J({"x": 1})J",
     R"J(yes no [])J"},
    {"attribute and subscript access",
     R"J({{ d.a }}{{ d['a'] }}{{ l[0] }}{{ l[-1] }}{{ l.1 }}{{ d.missing }}{{ l[10] }}{{ d.nested.k }}{{ d['nested']['k'] }})J",
     R"J({"d": {"a": 1, "nested": {"k": "v"}}, "l": [1, 2]})J",
     R"J(11122vv)J"},
    {"slicing",
     R"J({{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ [1, 2, 3, 4][1:] }} {{ [1, 2, 3, 4][:-1] }} {{ [1, 2, 3, 4][::2] }} {{ 'héllo'[1] }} {{ 'abc'[-2:] }})J",
     R"J({})J",
     R"J(el olleh [2, 3, 4] [1, 2, 3] [1, 3] é bc)J"},
    {"dict methods",
     R"J({{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 0) }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }})J",
     R"J({"d": {"a": 1, "b": 2}})J",
     R"J(1 None 0 ['a', 'b'] [1, 2] [('a', 1), ('b', 2)])J"},
    {"list methods",
     R"J({% set l = [3, 1] %}{% set _ = l.append(2) %}{{ l }} {{ l.pop() }} {{ l.pop(0) }} {{ l }}{% set _ = l.extend([5, 6]) %} {{ l }} {{ l.index(5) }} {{ l.count(1) }}{% set _ = l.insert(0, 9) %} {{ l }})J",
     R"J({})J",
     R"J([3, 1, 2] 2 3 [1] [1, 5, 6] 1 1 [9, 1, 5, 6])J"},
    {"string methods",
     R"J({{ ' a b '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|{{ 'hello world'.title() }}|{{ 'hELLO'.capitalize() }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'abc'.find('c') }}{{ 'abc'.find('z') }}|{{ 'banana'.count('an') }}|{{ '-'.join(['a', 'b']) }}|{{ '{} and {name}'.format(1, name='n') }}|{{ 'a</think>b</think>c'.split('</think>')[-1] }})J",
     R"J({})J",
     R"J(a b|a|a|a|['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|True|True|ABab|Hello World|Hello|bba|2-1|2|a-b|1 and n|c)J"},
    {"unicode case and length",
     R"J({{ 'éa'.upper() }} {{ 'ÀÉ' | lower }} {{ '日本語' | length }} )J",
     R"J({})J",
     R"J(ÉA àé 3 )J"},
    {"filters on strings",
     R"J({{ '  x  ' | trim }}|{{ 'a' | upper }}|{{ 'B' | lower }}|{{ 'hello there-you' | title }}|{{ 'hELLO' | capitalize }}|{{ 'aXa' | replace('X', 'y') }}|{{ '<a href="x">&\'' | e }}|{{ 'a' | safe }}|{{ 12 | string }}{{ none | string }})J",
     R"J({})J",
     R"J(x|A|b|Hello There-You|Hello|aya|&lt;a href=&#34;x&#34;&gt;&amp;&#39;|a|12None)J"},
    {"filters on lists",
     R"J({{ [3, 1, 2] | sort }} {{ ['b', 'A', 'a'] | sort }} {{ [3, 1] | sort(reverse=true) }} {{ [1, 2] | reverse | list }} {{ [1, 1, 2] | unique | list }} {{ [1, 2] | first }} {{ [1, 2] | last }} {{ [1, 2] | length }} {{ [1, 2] | count }} {{ ['a', 'b'] | join }} {{ [1, 2] | join(', ') }} {{ 'ab' | list }} {{ [1, 2, 3] | sum }} {{ [3, 1, 2] | min }}{{ [3, 1, 2] | max }})J",
     R"J({})J",
     R"J([1, 2, 3] ['A', 'a', 'b'] [3, 1] [2, 1] [1, 2] 1 2 2 2 ab 1, 2 ['a', 'b'] 6 13)J"},
    {"map select reject",
     R"J({{ users | map(attribute='name') | join(',') }} {{ users | selectattr('admin') | map(attribute='name') | list }} {{ users | rejectattr('admin') | map(attribute='name') | list }} {{ [1, 2, 3, 4] | select('even') | list }} {{ [1, 2, 3, 4] | reject('odd') | list }} {{ ['a', 'B'] | map('upper') | list }} {{ users | map(attribute='missing', default='?') | list }} {{ users | selectattr('name', 'equalto', 'b') | list | length }})J",
     R"J({"users": [{"name": "a", "admin": true}, {"name": "b", "admin": false}]})J",
     R"J(a,b ['a'] ['b'] [2, 4] [2, 4] ['A', 'B'] ['?', '?'] 1)J"},
    {"default filter",
     R"J({{ missing | default('dflt') }} {{ missing | d('d') }} {{ '' | default('empty') }} {{ '' | default('empty', true) }} {{ none | default('n') }} {{ none | default('n', boolean=true) }})J",
     R"J({})J",
     R"J(dflt d  empty None n)J"},
    {"number filters",
     R"J({{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 'x' | float }} {{ -3 | abs }} {{ -2.5 | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }})J",
     R"J({})J",
     R"J(42 4 0 7 3 2.5 0.0 3 2.5 2.57 2.0)J"},
    {"items and dictsort filters",
     R"J({{ d | items | list }} {{ d | dictsort }} {{ missing | items | list }})J",
     R"J({"d": {"b": 2, "a": 1}})J",
     R"J([('b', 2), ('a', 1)] [('a', 1), ('b', 2)] [])J"},
    {"tojson",
     R"J({{ data | tojson }}|{{ 'naïve "q" \n' | tojson }}|{{ [] | tojson }}|{{ {} | tojson(indent=2) }}|{{ none | tojson }}|{{ 1.0 | tojson }}|{{ (1, 2) | tojson }})J",
     R"J({"data": {"b": [1, 2.5, true, null], "a": "é😀", "c": {}}})J",
     R"J({"b": [1, 2.5, true, null], "a": "é😀", "c": {}}|"naïve \"q\" \n"|[]|{}|null|1.0|[1, 2])J"},
    {"tojson indent and options",
     R"J({{ data | tojson(indent=2) }}
{{ data | tojson(sort_keys=true) }}
{{ data | tojson(separators=(',', ':')) }}
{{ data | tojson(ensure_ascii=true) }}
{{ data | tojson(indent='\t') }})J",
     R"J({"data": {"z": [1, {"y": "é"}], "a": []}})J",
     R"J({
  "z": [
    1,
    {
      "y": "é"
    }
  ],
  "a": []
}
{"a": [], "z": [1, {"y": "é"}]}
{"z":[1,{"y":"é"}],"a":[]}
{"z": [1, {"y": "\u00e9"}], "a": []}
{
	"z": [
		1,
		{
			"y": "é"
		}
	],
	"a": []
})J"},
    {"indent filter",
     R"J({{ 'a\nb\n\nc' | indent }}|{{ 'a\nb' | indent(2, true) }}|{{ 'a\n\nb' | indent(width='>', blank=true) }})J",
     R"J({})J",
     R"J(a
    b

    c|  a
  b|a
>
>b)J"},
    {"range",
     R"J({{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }})J",
     R"J({})J",
     R"J([0, 1, 2] [1, 2, 3] [10, 7, 4, 1] [])J"},
    {"namespace from dict and attribute access",
     R"J({% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns['a'] }})J",
     R"J({})J",
     R"J(121)J"},
    {"dict literal and dict()",
     R"J({% set d = {'x': 1, 'y': [1, 2]} %}{{ d.x }}{{ d['y'][1] }} {{ dict(a=1) }})J",
     R"J({})J",
     R"J(12 {'a': 1})J"},
    {"message get with default",
     R"J({{ m.get('name') or m['role'] }} {{ m.get('missing', 'unknown') }})J",
     R"J({"m": {"role": "user"}})J",
     R"J(user unknown)J"},
    {"precedence of filters over operators",
     R"J({{ '1' + 'ab' | upper }} {{ -2 | abs }} {{ [1, 2] | length + 1 }} {{ 'a' ~ 'b' | upper }})J",
     R"J({})J",
     R"J(1AB 2 3 aB)J"},
    {"is defined on nested missing",
     R"J({{ m['reasoning_content'] is defined }} {{ m.content is defined and m.content }})J",
     R"J({"m": {"content": "c"}})J",
     R"J(False c)J"},
    {"undefined is iterable and has length 0",
     R"J({% for x in missing %}x{% endfor %}{{ missing | length }}{{ missing is iterable }})J",
     R"J({})J",
     R"J(0True)J"},
    {"loop over tool calls with nested access",
     R"J({% for tool in message['tool_calls'] %}{{ tool['function']['name'] }}({{ tool['function']['arguments'] }}){% if not loop.last %}, {% endif %}{% endfor %})J",
     R"J({"message": {"tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}, {"type": "function", "function": {"name": "g", "arguments": "{}"}}]}})J",
     R"J(f({"a": 1}), g({}))J"},
    {"from_json",
     R"J({% set args = '{"a": [1, 2], "b": "c"}' | from_json %}{% for k, v in args.items() %}{{ k }}={{ v }};{% endfor %})J",
     R"J({})J",
     R"J(a=[1, 2];b=c;)J"},
    {"multiline tag",
     R"J({{
  'a'
  ~ 'b'
}})J",
     R"J({})J",
     R"J(ab)J"},
    {"string comparisons and sorting by attribute",
     R"J({{ people | sort(attribute='age') | map(attribute='name') | join(' ') }} {{ people | sort(attribute='name', reverse=true) | map(attribute='name') | join(' ') }})J",
     R"J({"people": [{"name": "bo", "age": 30}, {"name": "al", "age": 25}, {"name": "cy", "age": 35}]})J",
     R"J(al bo cy cy bo al)J"},
};
// clang-format on

std::string render(const std::string& source, const std::string& context = "{}") {
  return dsv3::ChatTemplate(source).render(nlohmann::ordered_json::parse(context));
}

// The message of the dsv3::Error that parsing or rendering `source` throws.
std::string error_of(const std::string& source, const std::string& context = "{}") {
  try {
    render(source, context);
  } catch (const dsv3::Error& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(Jinja, FeaturesRenderLikePythonJinja2) {
  ASSERT_GE(sizeof kFeatureCases / sizeof kFeatureCases[0], 60u);
  for (const FeatureCase& feature : kFeatureCases) {
    SCOPED_TRACE(feature.name);
    std::string rendered;
    try {
      rendered = render(feature.source, feature.context);
    } catch (const dsv3::Error& error) {
      ADD_FAILURE() << "threw: " << error.what();
      continue;
    }
    EXPECT_EQ(rendered, feature.expected);
  }
}

TEST(Jinja, GenerationBlockRendersItsBody) {
  // transformers' {% generation %} only marks assistant tokens; the text is unchanged.
  EXPECT_EQ(render("a{% generation %}b{% endgeneration %}c"), "abc");
}

TEST(Jinja, StrftimeNowUsesTheFixedTimeWhenGiven) {
  EXPECT_EQ(
      render(R"({{ strftime_now("%d %b %Y %H:%M") }})", R"({"strftime_now_epoch": 1721952000})"),
      "26 Jul 2024 00:00");
  EXPECT_EQ(render(R"({{ strftime_now("%Y") | length }})"), "4");
}

TEST(Jinja, MacrosSeeNamespacesDefinedBeforeThem) {
  EXPECT_EQ(
      render(
          "{% set ns = namespace(n=0) %}{% macro bump() %}{% set ns.n = ns.n + 1 %}{% endmacro %}"
          "{{ bump() }}{{ bump() }}{{ ns.n }}"),
      "2");
}

TEST(Jinja, KeyOrderOfTheContextIsKept) {
  EXPECT_EQ(render("{{ tools | tojson }}",
                   R"({"tools": [{"type": "function", "function": {"name": "f"}}]})"),
            R"([{"type": "function", "function": {"name": "f"}}])");
}

TEST(JinjaErrors, SyntaxErrorsNameLineAndColumn) {
  EXPECT_EQ(error_of("{{ 1 + }}"),
            "chat template: line 1 col 8: expected an expression, found '}}'");
  EXPECT_EQ(error_of("a\n{% if x %}\nb"),
            "chat template: line 2 col 4: unclosed 'if' block: expected '{% endif %}' before the "
            "end of the template");
  EXPECT_EQ(error_of("ok\n  {{ x"), "chat template: line 2 col 3: unclosed tag: '{{' without '}}'");
  EXPECT_EQ(error_of("{# c"), "chat template: line 1 col 1: unclosed comment: '{#' without '#}'");
  EXPECT_EQ(error_of("{{ 'abc }}"), "chat template: line 1 col 4: unclosed string literal");
  EXPECT_EQ(error_of("{% for x in y %}{% endif %}"),
            "chat template: line 1 col 20: unexpected 'endif': no open block it could belong to");
  EXPECT_EQ(error_of("{% for %}"),
            "chat template: line 1 col 8: expected a name as the loop variable, found '%}'");
  EXPECT_EQ(error_of("{{ foo( }}"), "chat template: line 1 col 9: unexpected '}', expected ')'");
  EXPECT_EQ(error_of("{{ x ! }}"), "chat template: line 1 col 6: unexpected character '!' in tag");
  EXPECT_EQ(error_of("{% break %}"), "chat template: line 1 col 4: 'break' outside of a for loop");
  // Columns count characters, not bytes.
  EXPECT_EQ(error_of("日本 {{ + }}"),
            "chat template: line 1 col 9: expected an expression, found '}}'");
}

TEST(JinjaErrors, UnsupportedConstructsAreNamed) {
  EXPECT_EQ(error_of("{% include 'x' %}"),
            "chat template: line 1 col 4: unsupported statement 'include'");
  EXPECT_EQ(error_of("{% extends 'x' %}"),
            "chat template: line 1 col 4: unsupported statement 'extends'");
  EXPECT_EQ(error_of("{% frobnicate %}"),
            "chat template: line 1 col 4: unknown statement 'frobnicate'");
  EXPECT_EQ(error_of("{{ f(*a) }}"),
            "chat template: line 1 col 6: unsupported: *args and **kwargs in calls");
  EXPECT_EQ(error_of("{% for x in [1] recursive %}{% endfor %}"),
            "chat template: line 1 col 17: unsupported: recursive for loops");
  EXPECT_EQ(error_of("{{ '%s' % 1 }}"),
            "chat template: line 1 col 9: unsupported: printf-style string formatting with '%'");
  EXPECT_EQ(error_of("{{ x | nofilter }}"),
            "chat template: line 1 col 8: unknown filter 'nofilter'");
  EXPECT_EQ(error_of("{{ x is nottest }}"), "chat template: line 1 col 6: unknown test 'nottest'");
  EXPECT_EQ(error_of("{{ 'x'.nomethod() }}"),
            "chat template: line 1 col 16: 'str object' has no attribute 'nomethod'");
}

TEST(JinjaErrors, RaiseExceptionCarriesTheTemplatesMessage) {
  EXPECT_EQ(error_of("x\n  {{ raise_exception('Roles must alternate') }}"),
            "chat template: line 2 col 21: raise_exception: Roles must alternate");
  EXPECT_EQ(error_of("{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') "
                     "}}{% endif %}",
                     R"({"messages": [{"role": "assistant"}]})"),
            "chat template: line 1 col 54: raise_exception: first must be user");
}

TEST(JinjaErrors, RuntimeErrorsFollowPythonJinja2) {
  // Undefined prints as empty, but using it further is an error, as in Jinja2's default Undefined.
  EXPECT_EQ(render("[{{ missing }}][{{ d.missing }}][{{ none.x }}]", R"({"d": {}})"), "[][][]");
  EXPECT_EQ(error_of("{{ missing.attribute }}"),
            "chat template: line 1 col 11: 'missing' is undefined");
  EXPECT_EQ(error_of("{{ m[3].content }}", R"({"m": []})"),
            "chat template: line 1 col 8: 'list object' has no element 3");
  EXPECT_EQ(error_of("{{ 'a' + none }}"),
            "chat template: line 1 col 8: unsupported operand types for +: 'str' and 'NoneType'");
  EXPECT_EQ(error_of("{{ missing + 1 }}"), "chat template: line 1 col 12: 'missing' is undefined");
  EXPECT_EQ(error_of("{{ 1 / 0 }}"), "chat template: line 1 col 6: division by zero");
  EXPECT_EQ(error_of("{{ 9223372036854775807 + 1 }}"),
            "chat template: line 1 col 24: integer overflow (beyond 64 bits)");
  EXPECT_EQ(error_of("{% for x in none %}{% endfor %}"),
            "chat template: line 1 col 4: 'NoneType' object is not iterable");
  EXPECT_EQ(error_of("{% set x.y = 1 %}", R"({"x": 1})"),
            "chat template: line 1 col 4: cannot assign attribute 'y' on 'x': it is of type int, "
            "not a namespace()");
  EXPECT_EQ(error_of("{{ 1 < 'a' }}"), "chat template: line 1 col 4: cannot order int and str");
  EXPECT_EQ(
      error_of("{{ none | tojson }}{{ missing | tojson }}"),
      "chat template: line 1 col 33: tojson: object of type undefined is not JSON serializable");
  EXPECT_EQ(error_of("{{ 'not json' | from_json }}")
                .rfind("chat template: line 1 col 17: from_json: malformed JSON", 0),
            0u);
}

TEST(JinjaLimits, HostileTemplatesFailCleanly) {
  EXPECT_EQ(error_of("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"),
            "chat template: line 1 col 20: macro calls nested more than 100 deep");
  EXPECT_EQ(error_of("{{ 'x' * 100000000 }}"),
            "chat template: line 1 col 8: string longer than 67108864 bytes");
  EXPECT_EQ(error_of("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(30) %}{% set "
                     "ns.s = ns.s ~ ns.s %}{% endfor %}"),
            "chat template: line 1 col 90: string longer than 67108864 bytes");
  dsv3::jinja::RenderLimits small;
  small.max_loop_iterations = 1000;
  EXPECT_EQ(dsv3::ChatTemplate(
                "{% for i in range(10) %}{% for j in range(10) %}{% endfor %}{% endfor %}", small)
                .render(nlohmann::ordered_json::object()),
            "");
  EXPECT_THROW(
      dsv3::ChatTemplate(
          "{% for i in range(100) %}{% for j in range(10) %}{% endfor %}{% endfor %}", small)
          .render(nlohmann::ordered_json::object()),
      dsv3::Error);
  try {
    dsv3::ChatTemplate(
        "{% for i in range(100) %}\n{% for j in range(10) %}{% endfor %}{% endfor %}", small)
        .render(nlohmann::ordered_json::object());
    ADD_FAILURE() << "no error";
  } catch (const dsv3::Error& error) {
    EXPECT_STREQ(error.what(), "chat template: line 2 col 4: more than 1000 loop iterations");
  }
  // The default limit is ten million iterations over the whole render.
  EXPECT_EQ(dsv3::jinja::RenderLimits().max_loop_iterations, 10'000'000);
  EXPECT_EQ(error_of("{{ range(10000000) }}"),
            "chat template: line 1 col 9: range() of more than 1000000 items");
  EXPECT_EQ(error_of("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}"),
            "chat template: line 1 col 29: output longer than 67108864 bytes");
  // Reference cycles are allowed (as in Python) and freed at the end of the render; printing
  // one stops at the nesting limit (Python would print [[...]]).
  EXPECT_EQ(render("{% set l = [] %}{{ l.append(l) }}{{ l | length }}"), "None1");
  EXPECT_EQ(error_of("{% set ns = namespace(l=[]) %}{% set _ = ns.l.append(ns) %}{{ ns }}"),
            "chat template: line 1 col 60: values nested more than 512 deep");
  EXPECT_EQ(
      render("{% set l = [] %}{% set f = l.append %}{% set _ = l.append([f]) %}{{ l | length }}"),
      "1");
  // Deep nesting in the source is refused by the parser before it can exhaust the stack.
  EXPECT_EQ(error_of("{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}"),
            "chat template: line 1 col 104: template nested more than 200 levels deep");
  std::string nested_ifs;
  for (int i = 0; i < 300; ++i) nested_ifs += "{% if true %}";
  EXPECT_NE(error_of(nested_ifs).find("nested more than 200 levels deep"), std::string::npos);
  // Values nested a million deep are built and freed without recursion.
  EXPECT_EQ(render("{% set ns = namespace(v=[]) %}{% for i in range(200000) %}{% set ns.v = [ns.v] "
                   "%}{% endfor %}done"),
            "done");
  EXPECT_NE(error_of("{% set ns = namespace(v=[]) %}{% for i in range(1000) %}{% set ns.v = [ns.v] "
                     "%}{% endfor %}{{ ns.v }}")
                .find("nested more than 512 deep"),
            std::string::npos);
}

}  // namespace
