import { AsnConvert } from '@peculiar/asn1-schema';
import type { GeneralName, GeneralSubtree, Name, NameConstraints } from '@peculiar/asn1-x509';
import type { CertFacts } from './certFacts.js';

/**
 * RFC 5280 section 4.2.1.10 name constraints, for the name forms an
 * X509-SVID path carries: URI (the SPIFFE ID), DNS, and the subject's
 * directory name. Other forms (IP, email, ...) are not processed; as RFC 5280
 * requires, a certificate with a name of an unprocessed constrained form is
 * refused rather than waved through.
 */

const EMAIL_ADDRESS_OID = '1.2.840.113549.1.9.1';

type Form = 'uri' | 'dns' | 'dir' | 'ip' | 'email' | 'other';

/**
 * Why `subject`'s names break the constraints of the CA named `caWhat`, or
 * `undefined` when they comply.
 */
export function nameConstraintViolation(constraints: NameConstraints, subject: CertFacts, caWhat: string): string | undefined {
  const permitted = [...(constraints.permittedSubtrees ?? [])];
  const excluded = [...(constraints.excludedSubtrees ?? [])];
  for (const t of [...permitted, ...excluded]) {
    if ((t.minimum ?? 0) !== 0 || t.maximum !== undefined) {
      return `${caWhat} has a name constraint with minimum/maximum, which RFC 5280 forbids`;
    }
  }
  const names = namesOf(subject);
  for (const form of ['uri', 'dns', 'dir', 'ip', 'email', 'other'] as const) {
    const allow = permitted.filter((t) => formOf(t.base) === form);
    const deny = excluded.filter((t) => formOf(t.base) === form);
    const mine = names.filter((n) => n.form === form);
    if ((allow.length === 0 && deny.length === 0) || mine.length === 0) continue;
    for (const name of mine) {
      if (form === 'ip' || form === 'email' || form === 'other') {
        return `${caWhat} constrains ${form} names, which this validator does not process`;
      }
      if (allow.length > 0 && !allow.some((t) => matches(form, t.base, name.value))) {
        return `${name.label} is outside the permitted subtrees of ${caWhat}`;
      }
      if (deny.some((t) => matches(form, t.base, name.value))) {
        return `${name.label} is inside an excluded subtree of ${caWhat}`;
      }
    }
  }
  return undefined;
}

/**
 * RFC 5280 URI constraint: it applies to the host. `.example.org` is met by
 * any host below example.org but not by example.org itself; `example.org` is
 * met by that host only. Comparison ignores case, as DNS does.
 */
export function uriHostMatches(constraint: string, host: string): boolean {
  const c = constraint.toLowerCase();
  const h = host.toLowerCase();
  if (h === '') return false;
  if (c.startsWith('.')) return h.length > c.length && h.endsWith(c);
  return h === c;
}

/**
 * RFC 5280 DNS constraint: `example.org` is met by example.org and every name
 * below it (whole labels only); a leading `.` (common practice) means names
 * below only; the empty constraint is met by every name.
 */
export function dnsNameMatches(constraint: string, name: string): boolean {
  const c = constraint.toLowerCase();
  const n = name.toLowerCase();
  if (c === '') return true;
  if (c.startsWith('.')) return n.length > c.length && n.endsWith(c);
  return n === c || n.endsWith(`.${c}`);
}

/** The host of a URI, or '' when it has none (which no permitted subtree can match). */
export function uriHost(uri: string): string {
  try {
    return new URL(uri).hostname;
  } catch {
    return '';
  }
}

interface NamedValue {
  form: Form;
  value: string | Name;
  label: string;
}

function namesOf(facts: CertFacts): NamedValue[] {
  const out: NamedValue[] = [];
  if (!facts.subjectEmpty) out.push({ form: 'dir', value: facts.subject, label: 'subject name' });
  // RFC 5280: email constraints also cover emailAddress attributes of the subject.
  if (facts.subject.some((rdn) => rdn.some((atv) => atv.type === EMAIL_ADDRESS_OID))) {
    out.push({ form: 'email', value: '', label: 'subject emailAddress' });
  }
  for (const n of facts.sans) {
    const form = formOf(n);
    if (form === 'uri') out.push({ form, value: n.uniformResourceIdentifier!, label: `URI SAN '${n.uniformResourceIdentifier}'` });
    else if (form === 'dns') out.push({ form, value: n.dNSName!, label: `DNS SAN '${n.dNSName}'` });
    else if (form === 'dir') out.push({ form, value: n.directoryName!, label: 'directory name SAN' });
    else out.push({ form, value: '', label: `${form} SAN` });
  }
  return out;
}

function formOf(n: GeneralName): Form {
  if (n.uniformResourceIdentifier !== undefined) return 'uri';
  if (n.dNSName !== undefined) return 'dns';
  if (n.directoryName !== undefined) return 'dir';
  if (n.iPAddress !== undefined) return 'ip';
  if (n.rfc822Name !== undefined) return 'email';
  return 'other';
}

function matches(form: Form, base: GeneralSubtree['base'], value: string | Name): boolean {
  if (form === 'uri') return uriHostMatches(base.uniformResourceIdentifier!, uriHost(value as string));
  if (form === 'dns') return dnsNameMatches(base.dNSName!, value as string);
  return dirNameWithin(base.directoryName!, value as Name);
}

/** A directory name is within a subtree when the subtree's RDNs are a prefix of its own (compared as DER). */
function dirNameWithin(base: Name, name: Name): boolean {
  if (base.length > name.length) return false;
  return base.every((rdn, i) =>
    Buffer.from(AsnConvert.serialize(rdn)).equals(Buffer.from(AsnConvert.serialize(name[i]!))),
  );
}
