/**
 * Certificates that are not valid when they arrive: the CA backdates
 * notBefore (30 s by default) so that hosts whose clocks run a little
 * behind accept them at once, and a lifetime of minutes to hours absorbs
 * hosts running ahead. Beyond that, the certificate is unusable here and
 * the cause is the clocks, which is what the message says.
 */

/**
 * Why a certificate valid from `notBefore` to `notAfter` cannot be used at
 * `now` (this host's clock), or null when it can. The message starts with
 * "clock skew" and, with `detail` false, carries no times, so that a
 * repeated refusal reads the same each time.
 */
export function clockSkewProblem(notBefore: Date, notAfter: Date, now: Date, detail = true): string | null {
  if (now < notBefore) {
    const ahead = Math.ceil((notBefore.getTime() - now.getTime()) / 1000);
    const when = detail ? ` until ${notBefore.toISOString()} (${ahead} s from now by this host's clock)` : '';
    return `clock skew: the certificate is not valid yet${when}: this host's clock is behind the CA's by more than the CA backdates certificates (30 s by default); synchronize the clocks (NTP)`;
  }
  if (now >= notAfter) {
    const when = detail ? ` at ${notAfter.toISOString()}` : '';
    return `clock skew: the certificate expired${when} before it arrived: this host's clock is ahead of the CA's by more than the certificate's lifetime; synchronize the clocks (NTP)`;
  }
  return null;
}
