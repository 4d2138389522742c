import { describe, expect, it } from 'vitest';
import { SpiffeError } from '../spiffe/errors.js';
import {
  MAX_SPIFFE_ID_BYTES,
  MAX_TRUST_DOMAIN_BYTES,
  SpiffeId,
  isValidSpiffeId,
  isValidTrustDomain,
  parseSpiffeId,
  parseTrustDomain,
  requireWorkloadId,
  trustDomainId,
} from '../spiffe/id.js';

function rejection(fn: () => unknown): SpiffeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SpiffeError);
    return e as SpiffeError;
  }
  throw new Error('expected a SpiffeError, nothing was thrown');
}

function expectInvalidId(s: string, rule: RegExp): void {
  const e = rejection(() => parseSpiffeId(s));
  expect(e.code).toBe('INVALID_SPIFFE_ID');
  expect(e.message).toMatch(rule);
  expect(isValidSpiffeId(s)).toBe(false);
}

describe('parseSpiffeId', () => {
  it('accepts a workload ID and splits it into trust domain and path', () => {
    const id = parseSpiffeId('spiffe://example.org/ns/prod/sa/web');
    expect(id.trustDomain).toBe('example.org');
    expect(id.path).toBe('/ns/prod/sa/web');
    expect(id.toString()).toBe('spiffe://example.org/ns/prod/sa/web');
    expect(JSON.stringify({ id })).toBe('{"id":"spiffe://example.org/ns/prod/sa/web"}');
  });

  it("accepts the trust domain's own ID with an empty path", () => {
    const id = parseSpiffeId('spiffe://example.org');
    expect(id.path).toBe('');
    expect(id.isTrustDomainId).toBe(true);
    expect(id.toString()).toBe('spiffe://example.org');
  });

  describe('scheme', () => {
    it('accepts the scheme in any case and prints it lower-case', () => {
      for (const scheme of ['SPIFFE', 'Spiffe', 'sPiFfE']) {
        expect(parseSpiffeId(`${scheme}://example.org/a`).toString()).toBe('spiffe://example.org/a');
      }
    });

    it('rejects another scheme', () => {
      expectInvalidId('https://example.org/a', /scheme must be 'spiffe'/);
      expectInvalidId('spiffes://example.org/a', /scheme must be 'spiffe'/);
    });

    it("rejects a missing scheme or a missing '//'", () => {
      expectInvalidId('example.org/a', /must start with 'spiffe:\/\/'/);
      expectInvalidId('spiffe:example.org/a', /must start with 'spiffe:\/\/'/);
      expectInvalidId('spiffe:/example.org/a', /must start with 'spiffe:\/\/'/);
      expectInvalidId('://example.org/a', /must start with 'spiffe:\/\/'/);
    });

    it('rejects the empty string', () => {
      expectInvalidId('', /empty/);
    });
  });

  describe('trust domain', () => {
    it("accepts lowercase letters, digits, '.', '-' and '_'", () => {
      const td = 'a-b_c.9z.example0';
      expect(parseSpiffeId(`spiffe://${td}/x`).trustDomain).toBe(td);
    });

    it('rejects a missing trust domain', () => {
      expectInvalidId('spiffe://', /trust domain is missing/);
      expectInvalidId('spiffe:///path', /trust domain is missing/);
    });

    it('rejects uppercase letters instead of lowering them', () => {
      expectInvalidId('spiffe://Example.org/a', /uppercase letter 'E'/);
      expectInvalidId('spiffe://example.ORG', /uppercase letter 'O'/);
    });

    it('rejects percent-encoding', () => {
      expectInvalidId('spiffe://example%2eorg/a', /percent-encoding/);
    });

    it('rejects userinfo', () => {
      expectInvalidId('spiffe://user@example.org/a', /userinfo/);
      expectInvalidId('spiffe://user:pw@example.org/a', /userinfo/);
    });

    it('rejects a port', () => {
      expectInvalidId('spiffe://example.org:8443/a', /port/);
    });

    it('rejects any other character, naming it', () => {
      expectInvalidId('spiffe://exa mple.org/a', /invalid character U\+0020/);
      expectInvalidId('spiffe://exa+mple.org/a', /invalid character '\+'/);
      expectInvalidId('spiffe://exämple.org/a', /invalid character U\+00E4/);
      expectInvalidId('spiffe://[::1]/a', /invalid character '\['/);
    });

    it(`accepts ${MAX_TRUST_DOMAIN_BYTES} bytes and rejects one more`, () => {
      const longest = 'a'.repeat(MAX_TRUST_DOMAIN_BYTES);
      expect(parseSpiffeId(`spiffe://${longest}/x`).trustDomain).toBe(longest);
      expectInvalidId(`spiffe://${longest}a/x`, /trust domain is longer than 255 bytes/);
    });
  });

  describe('query and fragment', () => {
    it('rejects a query, in the path or right after the trust domain', () => {
      expectInvalidId('spiffe://example.org/a?x=1', /query is not allowed/);
      expectInvalidId('spiffe://example.org?x=1', /query is not allowed/);
    });

    it('rejects a fragment, in the path or right after the trust domain', () => {
      expectInvalidId('spiffe://example.org/a#frag', /fragment is not allowed/);
      expectInvalidId('spiffe://example.org#frag', /fragment is not allowed/);
    });
  });

  describe('path', () => {
    it("accepts letters of both cases, digits, '.', '-' and '_' in segments", () => {
      const id = parseSpiffeId('spiffe://example.org/Aa-Zz_09/.hidden/a..b/...');
      expect(id.path).toBe('/Aa-Zz_09/.hidden/a..b/...');
    });

    it('keeps the path case-sensitive', () => {
      expect(parseSpiffeId('spiffe://example.org/Web').equals(parseSpiffeId('spiffe://example.org/web'))).toBe(false);
    });

    it('rejects a trailing slash', () => {
      expectInvalidId('spiffe://example.org/', /trailing slash/);
      expectInvalidId('spiffe://example.org/a/', /trailing slash/);
    });

    it('rejects empty segments', () => {
      expectInvalidId('spiffe://example.org//a', /empty segment/);
      expectInvalidId('spiffe://example.org/a//b', /empty segment/);
    });

    it("rejects '.' and '..' segments", () => {
      expectInvalidId('spiffe://example.org/./a', /dot segment '\.'/);
      expectInvalidId('spiffe://example.org/a/..', /dot segment '\.\.'/);
      expectInvalidId('spiffe://example.org/a/../b', /dot segment '\.\.'/);
    });

    it('rejects percent-encoding in the path', () => {
      expectInvalidId('spiffe://example.org/a%20b', /path segment contains an invalid character '%'/);
    });

    it('rejects any other character, naming it', () => {
      expectInvalidId('spiffe://example.org/a b', /path segment contains an invalid character U\+0020/);
      expectInvalidId('spiffe://example.org/a:b', /path segment contains an invalid character ':'/);
      expectInvalidId('spiffe://example.org/a@b', /path segment contains an invalid character '@'/);
      expectInvalidId('spiffe://example.org/caf\u00e9', /invalid character U\+00E9/);
      expectInvalidId('spiffe://example.org/a\\b', /invalid character '\\'/);
    });
  });

  describe('length', () => {
    it(`accepts a whole ID of exactly ${MAX_SPIFFE_ID_BYTES} bytes and rejects one byte more`, () => {
      const prefix = 'spiffe://example.org/';
      const exact = prefix + 'a'.repeat(MAX_SPIFFE_ID_BYTES - prefix.length);
      expect(Buffer.byteLength(exact)).toBe(MAX_SPIFFE_ID_BYTES);
      expect(parseSpiffeId(exact).toString()).toBe(exact);
      expectInvalidId(`${exact}b`, /longer than 2048 bytes/);
    });

    it('measures length in bytes, not characters', () => {
      const prefix = 'spiffe://example.org/';
      // 1024 two-byte characters: 1024 JS characters but 2048 bytes of path.
      const s = prefix + '\u00e9'.repeat(1024);
      expect(s.length).toBeLessThan(MAX_SPIFFE_ID_BYTES);
      expectInvalidId(s, /longer than 2048 bytes/);
    });
  });
});

describe('SpiffeId', () => {
  it('validates the parts it is built from', () => {
    expect(new SpiffeId('example.org', '/a/b').toString()).toBe('spiffe://example.org/a/b');
    expect(rejection(() => new SpiffeId('Example.org', '/a')).code).toBe('INVALID_SPIFFE_ID');
    expect(rejection(() => new SpiffeId('example.org', 'a')).message).toMatch(/start with '\/'/);
    expect(rejection(() => new SpiffeId('example.org', '/a/')).message).toMatch(/trailing slash/);
  });

  it('refuses to build an ID longer than 2048 bytes', () => {
    const path = `/${'a'.repeat(MAX_SPIFFE_ID_BYTES)}`;
    expect(rejection(() => new SpiffeId('example.org', path)).message).toMatch(/longer than 2048 bytes/);
  });

  it('compares equal to the same ID given as an object or a string in any scheme case', () => {
    const id = parseSpiffeId('spiffe://example.org/web');
    expect(id.equals(new SpiffeId('example.org', '/web'))).toBe(true);
    expect(id.equals('SPIFFE://example.org/web')).toBe(true);
    expect(id.equals('spiffe://example.org/web2')).toBe(false);
    expect(id.equals('spiffe://other.org/web')).toBe(false);
    expect(id.equals('not an id')).toBe(false);
  });

  it('is a member of its own trust domain only, given by name or by ID', () => {
    const id = parseSpiffeId('spiffe://example.org/web');
    expect(id.isMemberOf('example.org')).toBe(true);
    expect(id.isMemberOf('spiffe://example.org')).toBe(true);
    expect(id.isMemberOf('example.com')).toBe(false);
    expect(id.isMemberOf('org')).toBe(false);
    expect(id.isMemberOf('sub.example.org')).toBe(false);
    expect(id.isMemberOf('EXAMPLE.ORG')).toBe(false);
  });
});

describe('parseTrustDomain', () => {
  it('accepts a bare name and returns it unchanged', () => {
    expect(parseTrustDomain('example.org')).toBe('example.org');
    expect(isValidTrustDomain('prod_1.example-2.org')).toBe(true);
  });

  it("accepts the trust domain's ID form and returns the bare name", () => {
    expect(parseTrustDomain('spiffe://example.org')).toBe('example.org');
    expect(parseTrustDomain('SPIFFE://example.org')).toBe('example.org');
  });

  it('refuses a SPIFFE ID that has a path', () => {
    const e = rejection(() => parseTrustDomain('spiffe://example.org/web'));
    expect(e.code).toBe('INVALID_TRUST_DOMAIN');
    expect(e.message).toMatch(/path '\/web'/);
  });

  it('applies the trust domain rules with the INVALID_TRUST_DOMAIN code', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /missing/],
      ['Example.org', /uppercase letter 'E'/],
      ['example.org:443', /port/],
      ['me@example.org', /userinfo/],
      ['exa%6dple.org', /percent-encoding/],
      ['example.org/', /invalid character '\/'/],
      ['a'.repeat(MAX_TRUST_DOMAIN_BYTES + 1), /longer than 255 bytes/],
      ['https://example.org', /scheme must be 'spiffe'/],
      ['spiffe://Example.org', /uppercase/],
    ];
    for (const [input, rule] of cases) {
      const e = rejection(() => parseTrustDomain(input));
      expect(e.code, input).toBe('INVALID_TRUST_DOMAIN');
      expect(e.message, input).toMatch(rule);
      expect(isValidTrustDomain(input)).toBe(false);
    }
  });
});

describe('trustDomainId', () => {
  it('returns spiffe://td for a valid trust domain', () => {
    expect(trustDomainId('example.org')).toBe('spiffe://example.org');
    expect(trustDomainId('spiffe://example.org')).toBe('spiffe://example.org');
  });

  it('rejects an invalid trust domain', () => {
    expect(rejection(() => trustDomainId('Example.org')).code).toBe('INVALID_TRUST_DOMAIN');
  });
});

describe('requireWorkloadId', () => {
  it('accepts an ID with a path', () => {
    expect(requireWorkloadId('spiffe://example.org/web').path).toBe('/web');
    const id = parseSpiffeId('spiffe://example.org/db');
    expect(requireWorkloadId(id)).toBe(id);
  });

  it("rejects the trust domain's own ID", () => {
    const e = rejection(() => requireWorkloadId('spiffe://example.org'));
    expect(e.code).toBe('INVALID_SPIFFE_ID');
    expect(e.message).toMatch(/path must not be empty/);
    expect(rejection(() => requireWorkloadId(parseSpiffeId('spiffe://example.org'))).code).toBe('INVALID_SPIFFE_ID');
  });

  it('rejects an invalid ID', () => {
    expect(rejection(() => requireWorkloadId('spiffe://example.org/a/')).code).toBe('INVALID_SPIFFE_ID');
  });
});
