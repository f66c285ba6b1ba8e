/*
 * fuzz_webhook_event.c - libFuzzer target for webhook_event_field and
 * webhook_event_about (server/webhook_event.c).
 *
 * The input, cut at its first NUL, is read as an outbox event. Whatever
 * it is: webhook_event_field for "id" and "type" answers 0 only with a
 * NUL-terminated value of 1 to outlen-1 characters of [A-Za-z0-9_.-] (and
 * never writes past out: a guard byte after it must stay), -1 otherwise;
 * webhook_event_about leaves every field NUL-terminated within its size.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_field(const char *json, const char *key, size_t outlen)
{
	char buf[72];
	int rc;

	memset(buf, 'G', sizeof(buf));
	rc = webhook_event_field(json, key, buf, outlen);
	if (buf[outlen] != 'G')
		abort();   /* wrote past out */
	if (rc == 0) {
		size_t n = strnlen(buf, outlen);

		if (n == 0 || n >= outlen)
			abort();
		for (size_t i = 0; i < n; i++) {
			char c = buf[i];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
				abort();
		}
	} else if (rc != -1) {
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *json = malloc(size + 1);
	struct webhook_about a;

	if (json == NULL)
		return 0;
	memcpy(json, data, size);
	json[size] = '\0';
	check_field(json, "id", 64);
	check_field(json, "type", 2);
	check_field(json, "type", 40);
	webhook_event_about(json, &a);
	if (memchr(a.type, '\0', sizeof(a.type)) == NULL ||
	    memchr(a.created_at, '\0', sizeof(a.created_at)) == NULL ||
	    memchr(a.msg_id, '\0', sizeof(a.msg_id)) == NULL ||
	    memchr(a.rcpt, '\0', sizeof(a.rcpt)) == NULL)
		abort();
	free(json);
	return 0;
}
