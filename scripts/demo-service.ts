#!/usr/bin/env node
/**
 * The two demo services of `npm start`, built only with the `spiffe/`
 * helpers: `server` answers HTTPS over mTLS and only to the client's SPIFFE
 * ID; `client` calls it every few seconds and logs the serial numbers both
 * sides presented, so rotation shows in the log. Both take their identity
 * from the Workload API named by SPIFFE_ENDPOINT_SOCKET.
 */
import 'reflect-metadata';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { X509Source, pickSvidByHint } from '../spiffe/x509-source.js';
import { authorizeId } from '../spiffe/authorize.js';
import { createHttpsMtlsServer, tlsClientOptions } from '../spiffe/mtls.js';

const [role, serverId, clientId, portText] = process.argv.slice(2);
const port = Number(portText);
const serial = (der: Buffer) => new X509Certificate(der).serialNumber.toLowerCase().slice(0, 12);
const say = (msg: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);

async function main() {
  if (!role || !serverId || !clientId || !port) throw new Error('usage: demo-service server|client SERVER_ID CLIENT_ID PORT');
  const source = await X509Source.create({ picker: pickSvidByHint(role) });
  let last = '';
  source.on('update', () => {
    const s = source.getX509Svid();
    const now = serial(s.chain[0]!);
    if (now !== last) say(`${role}: new SVID ${s.spiffeId.toString()} serial ${now}… valid until ${s.notAfter.toISOString().slice(11, 19)}`);
    last = now;
  });
  last = serial(source.getX509Svid().chain[0]!);
  say(`${role}: got SVID ${source.getX509Svid().spiffeId.toString()} serial ${last}…`);

  if (role === 'server') {
    const server = createHttpsMtlsServer(source, authorizeId(clientId), (req, res, peer) => {
      const peerCert = (req.socket as TLSSocket).getPeerCertificate();
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ hello: peer.toString(), clientSerial: peerCert.serialNumber?.toLowerCase().slice(0, 12) }));
    }, { onReject: (err) => say(`server: refused a peer: ${err.message}`) });
    server.listen(port, '127.0.0.1', () => say(`server: listening on https://127.0.0.1:${port}, accepting only ${clientId}`));
    process.once('SIGTERM', () => server.close(() => source.close()));
    return;
  }

  let ok = 0;
  let failed = 0;
  const timer = setInterval(() => {
    // A new connection each time (no keep-alive), so every call is a fresh mTLS handshake with the current SVIDs.
    const req = https.request(
      { host: '127.0.0.1', port, path: '/', method: 'GET', agent: false, ...tlsClientOptions(source, authorizeId(serverId)) },
      (res) => {
        const serverSerial = (res.socket as TLSSocket).getPeerCertificate().serialNumber?.toLowerCase().slice(0, 12);
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          ok++;
          const b = JSON.parse(body) as { clientSerial: string };
          say(`client: mTLS ok #${ok} (failed ${failed}): client serial ${b.clientSerial}… -> server serial ${serverSerial}…`);
        });
      },
    );
    req.on('error', (e) => {
      failed++;
      say(`client: call failed (${failed}): ${e.message}`);
    });
    req.end();
  }, 3000);
  process.once('SIGTERM', () => {
    clearInterval(timer);
    source.close();
  });
}

main().catch((e) => {
  process.stderr.write(`demo-service ${role}: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
