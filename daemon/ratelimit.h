/*
 * ratelimit.h - abuse and cost limits, checked before a message is
 * accepted: a per-institution request rate (token bucket), a daily message
 * quota per institution, and a per-recipient limit (N messages per number
 * per window) against SMS pumping. State lives outside configuration
 * generations, so a reload does not reset anyone's counters.
 */
#ifndef SMISD_RATELIMIT_H
#define SMISD_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/* Token bucket: `rate` tokens per second, at most `burst`. Returns 0 when
 * a token was taken, else the seconds to wait (>= 1). rate <= 0 disables.
 * This and the quota fail closed: without memory for the institution's
 * state they answer a wait of 1 (logged), never 0. */
int smisd_ratelimit_take(const char *institution, double rate, double burst, int64_t now_ms);

/* Daily quota (UTC days): returns 0 and counts one message, else the
 * seconds until midnight UTC. quota <= 0 disables. */
int smisd_ratelimit_quota(const char *institution, long quota, int64_t now_ms);

/* At most `max` messages per `window_s` seconds for one recipient (its
 * pseudonym) of one institution. Returns 0 and counts one, else the
 * seconds until the oldest one leaves the window. max <= 0 disables. Fails
 * closed like the above: without memory for the recipient's entry, a wait
 * of 1 (logged). */
int smisd_ratelimit_recipient(const char *institution, const char *recipient_hash, int max,
			      int window_s, int64_t now_ms);

/* Give back what a check took when the message is then refused for
 * another reason (so that refused calls do not eat quota). */
void smisd_ratelimit_unquota(const char *institution, int64_t now_ms);
void smisd_ratelimit_unrecipient(const char *institution, const char *recipient_hash);

/* After a reload: drop the state of every institution `configured` says is
 * no longer one, so that names given up (renamed, removed) do not pile up
 * over the process's life. Those still configured keep their counters. A
 * request admitted under the previous configuration may still make an
 * entry for a name dropped here; the next reload drops it. */
void smisd_ratelimit_retain(bool (*configured)(const char *institution, const void *arg), const void *arg);

void smisd_ratelimit_reset(void); /* tests */

#endif
