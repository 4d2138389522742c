/**
 * Typed errors of the agent's SSH side, with stable codes. The workload
 * service maps them to gRPC statuses at its edge (user-certificate-service.ts);
 * the host certificate keeper logs them and retries. Messages name what
 * failed and never hold key material.
 */
export type AgentSshErrorCode =
  | 'NOT_READY' // the agent has not completed its first sync with the CA
  | 'NO_SSH_ENTRY' // the caller has no entry with SSH principals (or not for the SPIFFE ID it asked for)
  | 'INVALID_KEY' // the public key is malformed, unsupported, or a private key
  | 'CA_UNAVAILABLE' // the CA cannot be reached right now
  | 'CA_REFUSED' // the CA refused to sign
  | 'BAD_CERTIFICATE' // the CA answered with a certificate that fails our checks
  | 'HOST_KEY_INVALID'; // the sshd host public key file is missing or not a public key

export class AgentSshError extends Error {
  readonly code: AgentSshErrorCode;
  constructor(code: AgentSshErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AgentSshError';
    this.code = code;
  }
}

export function isAgentSshError(e: unknown, code?: AgentSshErrorCode): e is AgentSshError {
  return e instanceof AgentSshError && (code === undefined || e.code === code);
}
