from __future__ import annotations

import pytest

from shared.errors import TemplateError
from shared.template import RenderedEmail, compile_template, placeholders


def test_placeholders_are_collected_across_parts_sorted_and_unique() -> None:
    names = placeholders("Hello {{ name }}", "<p>{{ name }} {{ city }}</p>", "{{ zip }}")
    assert names == ["city", "name", "zip"]


def test_placeholders_skip_missing_parts() -> None:
    assert placeholders("{{ a }}", None, None) == ["a"]


def test_placeholders_see_through_loops_filters_and_attributes() -> None:
    html = (
        "{% for item in items %}{{ item|upper }}{% endfor %}"
        "{% set greeting = 'hi' %}{{ greeting }} {{ name|default('x') }} {{ user.name }}"
    )
    assert placeholders("", html, None) == ["items", "name", "user"]


def test_placeholders_name_the_part_and_line_of_a_syntax_error() -> None:
    with pytest.raises(TemplateError, match=r"html part, line 2"):
        placeholders("ok", "<p>\n{{ name </p>", None)


def test_render_fills_every_part() -> None:
    template = compile_template("Hi {{ name }}", "<p>Hi {{ name }}</p>", "Hi {{ name }}\n")
    assert template.placeholders == ["name"]
    assert template.render({"name": "Ada"}) == RenderedEmail(
        subject="Hi Ada", html="<p>Hi Ada</p>", text="Hi Ada\n"
    )


def test_render_leaves_absent_parts_absent() -> None:
    rendered = compile_template("s", None, "t").render({})
    assert rendered.html is None
    assert rendered.text == "t"


def test_a_compiled_template_renders_many_times() -> None:
    template = compile_template("{{ n }}", None, "{{ n }}")
    assert [template.render({"n": str(i)}).text for i in range(3)] == ["0", "1", "2"]


def test_html_values_are_escaped_in_html_only() -> None:
    template = compile_template("{{ v }}", "<p>{{ v }}</p>", "{{ v }}")
    rendered = template.render({"v": "<script>alert(1)</script>"})
    assert rendered.html == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert rendered.text == "<script>alert(1)</script>"
    assert rendered.subject == "<script>alert(1)</script>"


def test_subject_line_breaks_are_collapsed() -> None:
    template = compile_template("Hello {{ name }}\n", None, "x")
    rendered = template.render({"name": "Ada\r\nBcc: victim@example.com"})
    assert rendered.subject == "Hello Ada Bcc: victim@example.com"


def test_a_missing_placeholder_is_named() -> None:
    template = compile_template("Hi {{ name }}", None, "{{ city }}")
    with pytest.raises(TemplateError, match="'city' is undefined"):
        template.render({"name": "Ada"})


def test_compile_rejects_a_syntax_error() -> None:
    with pytest.raises(TemplateError, match=r"subject part, line 1"):
        compile_template("{% if %}", None, None)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ name.__class__.__base__.__subclasses__() }}",
        "{{ name.__init__.__globals__ }}",
    ],
)
def test_the_sandbox_refuses_attribute_walking(source: str) -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        compile_template("s", None, source).render({"name": "Ada"})


def test_errors_raised_by_template_code_become_template_errors() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        compile_template("{{ 1 / 0 }}", None, None).render({})
