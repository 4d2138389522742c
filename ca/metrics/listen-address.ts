/**
 * HOST:PORT addresses of the HTTP listeners (metrics, dashboard), and the
 * loopback test that decides whether the dashboard may listen without
 * client certificates.
 */
import net from 'node:net';

export interface ListenAddress {
  /** Host name or IP address, without IPv6 brackets. */
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
}

/** The pattern config validation accepts: `host:port` or `[v6]:port`. */
export const HOST_PORT_PATTERN = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** Parses `host:port` or `[v6]:port`. Throws TypeError on anything else. */
export function parseListenAddress(text: string): ListenAddress {
  const m = HOST_PORT_PATTERN.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new TypeError(`${JSON.stringify(text)} is not HOST:PORT`);
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return { host, port };
}

/**
 * True for `localhost`, 127.0.0.0/8, ::1 and ::ffff:127.x: addresses only
 * processes on this machine can reach. Any other name is refused because
 * it could resolve anywhere.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) return h === '::1' || /^::ffff:127\./.test(h) || /^(0{1,4}:){7}0{0,3}1$/.test(h);
  return false;
}

/** `host:port` for URLs and logs (IPv6 in brackets). */
export function formatHostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
