/*
 * template.h - the pure template renderer: "{{var}}" and "{{{var}}}".
 *
 * {{name}} is replaced by the variable's value, HTML-escaped when
 * html_escape is set (the html part) and as is otherwise (subject, text);
 * {{{name}}} is always raw. Names: [A-Za-z0-9_.-]{1,64}, whitespace inside
 * the braces allowed ("{{ code }}"); a dotted name walks nested objects
 * ("{{user.name}}"). Values: strings as is, numbers and booleans
 * formatted, null as "". No I/O, no allocation beyond the result.
 */
#ifndef SERVER_TEMPLATE_H
#define SERVER_TEMPLATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

enum {
	TEMPLATE_ERR_MISSING = -1,   /* a variable is not in vars: its name in `name` */
	TEMPLATE_ERR_SYNTAX = -2,    /* unclosed or empty braces, bad name: position in `name` */
	TEMPLATE_ERR_NOMEM = -3,
	TEMPLATE_ERR_TOOBIG = -4,    /* result over max_out bytes */
};

/*
 * template_render - render src[0..len) with vars (an object, may be NULL).
 * Returns 0 with *out malloc'd (NUL-terminated, *out_len bytes), or
 * TEMPLATE_ERR_* with a variable name or "offset N" in name[0..namelen).
 */
int template_render(const char *src, size_t len, const cJSON *vars, int html_escape,
    size_t max_out, char **out, size_t *out_len, char *name, size_t namelen);

/* template_check - syntax check only (for PUT /v1/templates); same errors as render. */
int template_check(const char *src, size_t len, char *name, size_t namelen);

#endif
