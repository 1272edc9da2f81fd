/*
 * gsm7.h - SMS encoding choice and segment counting (GSM 03.38 / TS 23.040).
 *
 * Answers the questions an SMS channel, the RingRing simulator and the daemon
 * all need answered the same way: "which encoding will this text travel in,
 * how many characters is it, and how many SMS parts will the citizen's phone
 * receive?". Counting differently in two places would make the plugin, the
 * simulator and the delivery report disagree, so they all link this library
 * (lib/libsmisgsm7.la) instead of counting themselves.
 *
 * Rules implemented (see shared/reference/gsm-03.38-and-segments.md):
 *  - GSM-7 when every character is in the GSM 03.38 default alphabet or its
 *    extension table; an extension character costs 2 septets (ESC + code).
 *    Both U+00C7 (Ç) and U+00E7 (ç) map to 0x09: the ETSI table shows Ç,
 *    the Unicode mapping says ç, phones in the field accept both.
 *    NBSP is NOT GSM-7 (0x1B alone is the escape, not a space).
 *  - Otherwise UCS-2, counted in UTF-16 code units: a character outside the
 *    BMP (most emoji) costs 2 units, as phones send it as a surrogate pair.
 *  - One part holds 160 septets / 70 units. Longer texts are split into parts
 *    of 153 septets / 67 units (the 6-octet concatenation header takes the
 *    rest), never splitting an escape pair (a part may then hold 152 septets)
 *    or a surrogate pair (a part may then hold 66 units).
 *  - The empty text is 1 part of 0 characters, GSM-7: that is what a provider
 *    bills if it accepts it at all (RingRing rejects it, result code 7).
 *  - No upper bound on parts is enforced here (TS 23.040 allows 255, RingRing
 *    caps the text at 758 characters): callers apply their own limit.
 *
 * All functions are pure, reentrant, safe from any thread and never block.
 * Input text is borrowed for the call; it need not be NUL-terminated (`len`
 * bytes are read) and must be strict UTF-8: overlong forms, surrogates
 * (U+D800..U+DFFF), code points above U+10FFFF, truncated sequences and stray
 * continuation bytes are rejected with -EINVAL.
 */
#ifndef SMIS_GSM7_H
#define SMIS_GSM7_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Values are the TP-DCS data codings (0x00 default alphabet, 0x08 UCS2), the
 * same numbers RingRing's PHP SDK sends as `messageEncoding`. */
enum smis_sms_encoding {
	SMIS_SMS_GSM7 = 0,
	SMIS_SMS_UCS2 = 8,
};

#define SMIS_SMS_GSM7_SINGLE 160u /* septets in a lone SMS */
#define SMIS_SMS_GSM7_MULTI 153u  /* septets per part of a long SMS */
#define SMIS_SMS_UCS2_SINGLE 70u  /* UTF-16 units in a lone SMS */
#define SMIS_SMS_UCS2_MULTI 67u   /* UTF-16 units per part of a long SMS */

struct smis_sms_info {
	int encoding; /* SMIS_SMS_GSM7 or SMIS_SMS_UCS2 */
	size_t chars; /* Unicode code points (a flag emoji counts 2) */
	size_t units; /* septets for GSM-7, UTF-16 code units for UCS-2 */
	size_t parts; /* SMS parts a phone receives, >= 1 */
};

/*
 * Choose the encoding of `len` bytes of UTF-8 at `utf8` and count them.
 * `utf8` may be NULL when `len` is 0. Fills `*out` (borrowed) and returns 0,
 * or returns -EINVAL (invalid UTF-8, NULL `out`) leaving `*out` untouched.
 */
int smis_sms_analyze(const char *utf8, size_t len, struct smis_sms_info *out);

/*
 * Cut the text into parts exactly as a phone would: greedy, each part as full
 * as the rules above allow. On success `offsets[i]` is the byte offset where
 * part i starts (offsets[0] == 0; part i ends where part i+1 starts, the last
 * at `len`), `*n_parts` is the number of parts (== smis_sms_analyze's
 * `parts`) and 0 is returned. The empty text is one part starting at 0.
 * If more than `max_parts` parts are needed, the first `max_parts` offsets
 * are written, `*n_parts` is set to the number needed and -ENOBUFS is
 * returned (call with `offsets` NULL and `max_parts` 0 to size the array).
 * Returns -EINVAL for invalid UTF-8 or a NULL `n_parts`.
 * `offsets` (max_parts entries) and `n_parts` are borrowed.
 */
int smis_sms_split(const char *utf8, size_t len, size_t *offsets, size_t max_parts,
		   size_t *n_parts);

/*
 * Optional GSM-7 friendly rewrite, for texts pasted from word processors:
 * typographic quotes and primes to ' or ", « » to ", dashes and minus to -,
 * … to ..., bullets to -, NBSP and the other Unicode spaces (and TAB) to a
 * space, zero-width characters and the soft hyphen removed, Greek capitals
 * that look Latin (Α, Β, Ε, ...) to the Latin letter. GSM-7 characters are
 * never touched.
 * All or nothing: the rewrite is applied only if it makes the whole text
 * GSM-7. A text with a real non-GSM-7 character (ê, œ, an emoji, CJK) travels
 * as UCS-2 anyway, where the original typography costs no more (… is 1 unit,
 * "..." would be 3), so it is returned unchanged.
 * On success `*out` is a new NUL-terminated string (caller frees with free())
 * and 0 is returned; -EINVAL for invalid UTF-8 or NULL `out`, -ENOMEM.
 * Note: a text containing U+0000 is not GSM-7 and is copied unchanged, so
 * strlen(*out) is then shorter than the copy.
 */
int smis_sms_replace_lookalikes(const char *utf8, size_t len, char **out);

/* "GSM-7" or "UCS-2" (static strings, fit smis-plugin.h's sms_encoding[16]);
 * "unknown" for any other value. */
const char *smis_sms_encoding_name(int encoding);

/*
 * GSM 03.38 lookup of one code point: returns 1 for the default alphabet,
 * 2 for the extension table (the septet cost, ESC included), 0 when the code
 * point has no GSM-7 form. When non-zero and `code` is not NULL, `*code` receives
 * the septet (for an extension character, the one that follows ESC).
 */
int smis_sms_gsm7_lookup(uint32_t cp, uint8_t *code);

#ifdef __cplusplus
}
#endif

#endif /* SMIS_GSM7_H */
