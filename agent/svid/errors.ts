/**
 * Failures of the agent's own identity that no retry can fix: the operator
 * has to act. Messages say what to do; they never carry a token or a key.
 */
export type AgentSvidErrorCode =
  | 'NO_ATTESTATION' // no usable agent SVID and no attestation method configured
  | 'JOIN_TOKEN_REQUIRED' // a join-token agent lost its identity (expired, evicted): it needs a new token
  | 'ATTESTATION_FAILED' // the CA refused to attest this node
  | 'NODE_CREDENTIALS_INVALID' // the x509pop certificate or key cannot be used
  | 'STATE_INVALID'; // the data directory holds something unusable

export class AgentSvidError extends Error {
  readonly code: AgentSvidErrorCode;
  constructor(code: AgentSvidErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AgentSvidError';
    this.code = code;
  }
}

export function isAgentSvidError(e: unknown, code?: AgentSvidErrorCode): e is AgentSvidError {
  return e instanceof AgentSvidError && (code === undefined || e.code === code);
}

/** What a join-token agent's operator must do once its identity is gone. */
export function joinTokenAdvice(dataDir: string): string {
  return (
    'a join-token agent cannot attest again by itself: create a new join token (brevis-ca token create) ' +
    `and restart the agent with --join-token TOKEN (same --data-dir ${dataDir})`
  );
}
