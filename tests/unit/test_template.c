/*
 * test_template.c - table-driven tests of server/template.c: escaping,
 * raw placeholders, dotted names, value formatting, missing variables,
 * syntax errors with their offsets, the output cap, and a verification-code
 * template rendered end to end.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/template.h"

static const char vars_json[] =
    "{\"code\":\"123456\",\"name\":\"<script>alert('x')</script> & \\\"co\\\"\","
    "\"user\":{\"name\":\"Zhang San 张三\",\"address\":{\"city\":\"北京\"}},"
    "\"n\":42,\"neg\":-7,\"pi\":3.25,\"big\":12345678901,\"yes\":true,\"no\":false,"
    "\"nothing\":null,\"list\":[1,2],\"obj\":{},\"dash-name\":\"d\",\"under_score\":\"u\","
    "\"empty\":\"\"}";

struct render_case {
	const char *src;
	int html;
	const char *want;       /* output when want_rc == 0, else the name/offset */
	int want_rc;
};

static const struct render_case render_cases[] = {
	{ "", 0, "", 0 },
	{ "no placeholders", 0, "no placeholders", 0 },
	{ "Your code is {{code}}", 0, "Your code is 123456", 0 },
	{ "{{ code }}", 0, "123456", 0 },
	{ "{{\tcode\n}}", 0, "123456", 0 },
	{ "{{code}}{{code}}", 0, "123456123456", 0 },
	{ "Hi {{name}}", 0, "Hi <script>alert('x')</script> & \"co\"", 0 },
	{ "Hi {{name}}", 1, "Hi &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;", 0 },
	{ "Hi {{{name}}}", 1, "Hi <script>alert('x')</script> & \"co\"", 0 },
	{ "Hi {{{ name }}}", 0, "Hi <script>alert('x')</script> & \"co\"", 0 },
	{ "{{user.name}} in {{user.address.city}}", 1, "Zhang San 张三 in 北京", 0 },
	{ "{{n}} {{neg}} {{pi}} {{big}}", 0, "42 -7 3.25 12345678901", 0 },
	{ "{{yes}}/{{no}}/[{{nothing}}]/[{{empty}}]", 0, "true/false/[]/[]", 0 },
	{ "{{dash-name}}{{under_score}}", 0, "du", 0 },
	{ "a { b } c {x} }} {", 0, "a { b } c {x} }} {", 0 },
	{ "<b>{{code}}</b>", 1, "<b>123456</b>", 0 },
	/* missing variables: the name */
	{ "Hi {{missing}}", 0, "missing", TEMPLATE_ERR_MISSING },
	{ "{{user.age}}", 0, "user.age", TEMPLATE_ERR_MISSING },
	{ "{{code.inner}}", 0, "code.inner", TEMPLATE_ERR_MISSING },
	{ "{{Code}}", 0, "Code", TEMPLATE_ERR_MISSING },
	{ "{{list}}", 0, "list", TEMPLATE_ERR_MISSING },
	{ "{{obj}}", 0, "obj", TEMPLATE_ERR_MISSING },
	/* syntax errors: the offset of the opening braces */
	{ "abc {{", 0, "offset 4", TEMPLATE_ERR_SYNTAX },
	{ "{{}}", 0, "offset 0", TEMPLATE_ERR_SYNTAX },
	{ "x{{  }}", 0, "offset 1", TEMPLATE_ERR_SYNTAX },
	{ "{{code", 0, "offset 0", TEMPLATE_ERR_SYNTAX },
	{ "{{code}", 0, "offset 0", TEMPLATE_ERR_SYNTAX },
	{ "ok {{code}} {{bad name}}", 0, "offset 12", TEMPLATE_ERR_SYNTAX },
	{ "{{a$b}}", 0, "offset 0", TEMPLATE_ERR_SYNTAX },
	{ "{{{code}}", 0, "offset 0", TEMPLATE_ERR_SYNTAX },
	{ "{{code}}}", 0, "offset 0", TEMPLATE_ERR_SYNTAX },
	{ "{{.code}}", 0, "offset 0", TEMPLATE_ERR_SYNTAX },
	{ "{{user..name}}", 0, "offset 0", TEMPLATE_ERR_SYNTAX },
	{ "{{user.}}", 0, "offset 0", TEMPLATE_ERR_SYNTAX },
	{ "{{aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}", 0, "offset 0",
	  TEMPLATE_ERR_SYNTAX },
};

Test(template, render_table)
{
	cJSON *vars = cJSON_Parse(vars_json);

	cr_assert_not_null(vars, "test vars do not parse");
	for (size_t i = 0; i < sizeof render_cases / sizeof render_cases[0]; i++) {
		const struct render_case *c = &render_cases[i];
		char *out = (char *)"unset";
		size_t len = 12345;
		char name[80] = "";
		int rc = template_render(c->src, strlen(c->src), vars, c->html, 1 << 20,
		    &out, &len, name, sizeof name);

		cr_expect_eq(rc, c->want_rc, "case %zu %s: got rc %d, want %d", i, c->src, rc, c->want_rc);
		if (rc == 0 && c->want_rc == 0) {
			cr_expect_str_eq(out, c->want, "case %zu %s: got \"%s\", want \"%s\"", i, c->src,
			    out, c->want);
			cr_expect_eq(len, strlen(c->want), "case %zu: got len %zu, want %zu", i, len,
			    strlen(c->want));
			free(out);
		} else if (rc != 0) {
			cr_expect_null(out, "case %zu: *out set on error", i);
			cr_expect_str_eq(name, c->want, "case %zu %s: got name \"%s\", want \"%s\"", i,
			    c->src, name, c->want);
		}
		/* template_check agrees on syntax, ignores variables */
		rc = template_check(c->src, strlen(c->src), name, sizeof name);
		cr_expect_eq(rc, c->want_rc == TEMPLATE_ERR_SYNTAX ? TEMPLATE_ERR_SYNTAX : 0,
		    "case %zu %s: template_check got %d", i, c->src, rc);
	}
	cJSON_Delete(vars);
}

Test(template, null_vars_and_cap)
{
	char *out = NULL;
	size_t len = 0;
	char name[32];
	cJSON *vars = cJSON_Parse("{\"v\":\"0123456789\"}");
	int rc;

	rc = template_render("plain", 5, NULL, 0, 100, &out, &len, name, sizeof name);
	cr_expect_eq(rc, 0, "got %d, want 0", rc);
	cr_expect_str_eq(out, "plain", "got %s, want plain", out);
	free(out);
	out = NULL;
	rc = template_render("{{v}}", 5, NULL, 0, 100, &out, &len, name, sizeof name);
	cr_expect_eq(rc, TEMPLATE_ERR_MISSING, "got %d, want MISSING", rc);
	cr_expect_str_eq(name, "v", "got %s, want v", name);

	/* exactly at the cap is fine, one over is not */
	rc = template_render("a{{v}}b", 7, vars, 0, 12, &out, &len, name, sizeof name);
	cr_expect_eq(rc, 0, "got %d, want 0", rc);
	cr_expect_eq(len, 12, "got %zu, want 12", len);
	free(out);
	out = NULL;
	rc = template_render("a{{v}}bc", 8, vars, 0, 12, &out, &len, name, sizeof name);
	cr_expect_eq(rc, TEMPLATE_ERR_TOOBIG, "got %d, want TOOBIG", rc);
	cr_expect_null(out, "output on error");
	/* escaping counts toward the cap */
	rc = template_render("{{v}}&", 6, vars, 1, 12, &out, &len, name, sizeof name);
	cr_expect_eq(rc, 0, "got %d, want 0 (the literal & is not escaped)", rc);
	free(out);
	cJSON_Delete(vars);
}

/* the README's verification-code template, end to end */
Test(template, verification_code)
{
	static const struct {
		const char *src;
		int html;
		const char *want;
	} parts[] = {
		{ "Your code is {{code}}", 0, "Your code is 482913" },
		{ "Hi {{name}},\nyour code is {{code}}. It expires in {{minutes}} minutes.\n", 0,
		  "Hi Eve <script>x</script>,\nyour code is 482913. It expires in 10 minutes.\n" },
		{ "<p>Hi {{name}},</p><p>your code is <b>{{code}}</b>.</p>", 1,
		  "<p>Hi Eve &lt;script&gt;x&lt;/script&gt;,</p><p>your code is <b>482913</b>.</p>" },
	};
	cJSON *vars = cJSON_Parse("{\"code\":\"482913\",\"name\":\"Eve <script>x</script>\",\"minutes\":10}");

	cr_assert_not_null(vars);
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
		char *out = NULL, name[32] = "";
		size_t len = 0;
		int rc = template_render(parts[i].src, strlen(parts[i].src), vars, parts[i].html,
		    65536, &out, &len, name, sizeof name);

		cr_assert_eq(rc, 0, "part %zu: got rc %d (%s), want 0", i, rc, name);
		cr_expect_str_eq(out, parts[i].want, "part %zu: got \"%s\", want \"%s\"", i, out,
		    parts[i].want);
		free(out);
	}
	cJSON_Delete(vars);
}
