/**
 * One mTLS handshake against a test server that answers 'ok' and closes:
 * resolves when the answer arrives, rejects with why it did not (TLS
 * error, wrong answer, or no answer within 5 s). The probe of the
 * handshake loops that run through rotations and failovers.
 */
import * as tls from 'node:tls';

export function handshakeOnce(options: tls.ConnectionOptions, port: number, servername: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const socket = tls.connect({ ...options, host: '127.0.0.1', port, servername });
    let data = '';
    const timer = setTimeout(() => socket.destroy(new Error('handshake timed out')), 5_000);
    socket.on('data', (d) => (data += d));
    socket.on('end', () => {
      clearTimeout(timer);
      if (data === 'ok') resolve();
      else reject(new Error(`server closed without answering (got '${data}')`));
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
