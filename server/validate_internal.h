/*
 * validate_internal.h - what validate.c and validate_scan.c share.
 * Included by server/validate*.c only; everyone else uses validate.h.
 */
#ifndef SERVER_VALIDATE_INTERNAL_H
#define SERVER_VALIDATE_INTERNAL_H

/*
 * validate_field_clean - make a field path safe to echo in place: control
 * bytes (and every byte >= 0x80 when f is not valid UTF-8) become '?'.
 */
void validate_field_clean(char *f);

#endif
