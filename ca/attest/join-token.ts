/**
 * Join tokens: one-time secrets an operator hands to a new node. The token
 * is 32 random bytes (256 bits) in base64url; only its SHA-256 is stored.
 * A separate random id names the token in agent IDs and audit records, so
 * the secret never appears anywhere after it is printed once.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { JoinTokenRecord } from '../store/store.js';

export interface NewJoinToken {
  /** The secret, shown to the operator once. */
  secret: string;
  record: JoinTokenRecord;
}

export function hashJoinToken(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export function defaultJoinTokenAgentId(trustDomain: string, tokenId: string): string {
  return `spiffe://${trustDomain}/brevis/agent/join_token/${tokenId}`;
}

export function newJoinToken(args: {
  trustDomain: string;
  agentId?: string | undefined;
  nowSeconds: number;
  ttlSeconds: number;
}): NewJoinToken {
  const secret = randomBytes(32).toString('base64url');
  const id = randomBytes(8).toString('hex');
  return {
    secret,
    record: {
      id,
      secretHash: hashJoinToken(secret),
      agentId: args.agentId ?? defaultJoinTokenAgentId(args.trustDomain, id),
      expiresAt: args.nowSeconds + args.ttlSeconds,
      usedAt: null,
      createdAt: args.nowSeconds,
    },
  };
}

/** A join token as typed by a human: base64url, 43 characters. Cheap shape check before hashing. */
export function looksLikeJoinToken(s: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(s);
}
