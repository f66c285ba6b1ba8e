/*
 * fuzz_retry_hint.c - libFuzzer target for retry_hint_parse (smtp/retry_hint.c)
 * and its use by retry_decide_hint (smtp/retry.c).
 *
 * Checks the contract on any bytes: the answer is 0 or within
 * [RETRY_HINT_MIN_S, RETRY_HINT_MAX_S]; it is the same for the text in
 * upper case (the grammar is ASCII case-insensitive) and with a space in
 * front (a word boundary already); reading stops at len (ASan sees a read
 * past the exact-size copies). And the decision it feeds is never earlier
 * than the policy's, is the hint's when marked so, and never passes expiry.
 * It must never abort on input that is merely hostile; only a broken contract.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtp/retry.h"
#include "../../smtp/retry_hint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_HINT_MAX 65536

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct retry_policy p = { 1, 30 };
	struct retry_decision d;
	char *upper, *spaced;
	int got, attempts;
	int64_t now = 1000000, expires = now + 3600 * 1000, policy;

	if (size > FUZZ_HINT_MAX)
		return 0;
	got = retry_hint_parse(text, size);
	if (got != 0 && (got < RETRY_HINT_MIN_S || got > RETRY_HINT_MAX_S))
		abort();
	if (retry_hint_parse(text, size) != got)
		abort();

	upper = malloc(size > 0 ? size : 1);
	spaced = malloc(size + 1);
	if (upper == NULL || spaced == NULL)
		abort();
	for (size_t i = 0; i < size; i++)
		upper[i] = (text[i] >= 'a' && text[i] <= 'z') ? (char)(text[i] - 'a' + 'A') : text[i];
	if (retry_hint_parse(upper, size) != got)
		abort();
	spaced[0] = ' ';
	if (size > 0)
		memcpy(spaced + 1, text, size);
	if (retry_hint_parse(spaced, size + 1) != got)
		abort();
	free(upper);
	free(spaced);

	attempts = size > 0 ? (data[0] % 8) + 1 : 1;
	policy = retry_delay_ms(&p, attempts);
	d = retry_decide_hint(&p, SMTP_RESULT_TEMPFAIL, attempts, now, expires, (int64_t)got * 1000);
	if (d.verdict == RETRY_DEFERRED) {
		if (d.next_ms < now + policy || d.next_ms >= expires)
			abort();
		if (d.hinted != (got * 1000 > policy) || (d.hinted && d.next_ms != now + (int64_t)got * 1000))
			abort();
	} else if (d.verdict != RETRY_EXPIRED || (int64_t)got * 1000 < expires - now) {
		abort();
	}
	return 0;
}
