/**
 * Caller input quoted back in an error message: short, and printable ASCII
 * only, so that a hostile value cannot forge log lines or terminal escapes
 * when the message is logged or printed.
 */

/** `s` cut to `max` characters, with anything outside printable ASCII shown as `?`. */
export function echo(s: string, max = 64): string {
  const cut = [...s].slice(0, max);
  const shown = cut.map((c) => (/^[\x20-\x7e]$/.test(c) ? c : '?')).join('');
  return cut.length < [...s].length ? `${shown}…` : shown;
}
