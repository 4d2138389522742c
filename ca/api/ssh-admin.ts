/**
 * The SSH half of the admin API: sign a user or host certificate for any
 * public key and principals (the operator's own key, a host being set up
 * by hand), and show the SSH CA public keys to trust. Issuances are audit
 * records like every admin action.
 */
import type { GetSSHCAKeysRequest, SignSSHCertificateRequest } from '../../proto/gen/brevis/ca/v1/admin.js';
import { SSHCertificateType } from '../../proto/gen/brevis/ca/v1/types.js';
import { CaError } from '../errors.js';
import { resolveTtl } from '../issue/ttl-policy.js';
import type { SshCertType } from '../ssh/certificate.js';
import { DEFAULT_USER_EXTENSIONS, validateForceCommand, validateKeyId, validatePrincipals, validateSourceAddress } from '../ssh/options.js';
import { parseAuthorizedKey } from '../ssh/public-key.js';
import type { AuditRecord } from '../store/store.js';
import type { CaContext } from './context.js';
import { sshCertificateToProto } from './convert.js';
import { unary } from './errors.js';

function certType(t: SSHCertificateType): SshCertType {
  if (t === SSHCertificateType.SSH_CERTIFICATE_TYPE_USER) return 'user';
  if (t === SSHCertificateType.SSH_CERTIFICATE_TYPE_HOST) return 'host';
  throw new CaError('INVALID_ARGUMENT', 'the certificate type must be user or host');
}

export function sshAdminHandlers(ctx: CaContext, audit: (rec: Omit<AuditRecord, 'timeMs' | 'caller'>) => Promise<void>) {
  const { logger } = ctx;

  const sign = async (req: SignSSHCertificateRequest) => {
    const type = certType(req.type);
    const principals = validatePrincipals(req.principals, type);
    const ttl = resolveTtl(type === 'user' ? ctx.ssh.userTtl : ctx.ssh.hostTtl, req.ttlSeconds, 'TTL');
    const keyId = req.keyId ? validateKeyId(req.keyId) : undefined;
    if (type === 'host' && (req.forceCommand || req.sourceAddress)) {
      throw new CaError('INVALID_ARGUMENT', 'force-command and source-address apply to user certificates only');
    }
    const criticalOptions = {
      forceCommand: req.forceCommand ? validateForceCommand(req.forceCommand) : undefined,
      sourceAddress: req.sourceAddress ? validateSourceAddress(req.sourceAddress) : undefined,
    };
    const publicKey = parseAuthorizedKey(req.publicKey);
    const cert = await ctx.ssh.issuer.issue({
      type,
      publicKey,
      principals,
      ttlSeconds: ttl,
      keyId: (serial) => keyId ?? `brevis-ca admin serial=${serial}`,
      ...(type === 'user' ? { criticalOptions, extensions: DEFAULT_USER_EXTENSIONS } : {}),
    });
    await audit({
      action: `ssh.sign.${type}`,
      spiffeId: null,
      serial: cert.serial.toString(10),
      notAfter: cert.validBefore,
      outcome: 'success',
      detail: `admin sign; key id ${JSON.stringify(cert.keyId.slice(0, 256))}; principals ${principals.join(',')}; key ${cert.subjectFingerprint}`,
    });
    logger.info({ type, serial: cert.serial.toString(10), principals }, 'SSH certificate signed by the admin');
    return { certificate: sshCertificateToProto(cert) };
  };

  return {
    signSshCertificate: unary(sign, logger),
    getSshcaKeys: unary(async (req: GetSSHCAKeysRequest) => ({
      publicKeys: ctx.ssh.trustedKeys(certType(req.type) === 'user' ? 'ssh-user' : 'ssh-host'),
    }), logger),
  };
}
