/**
 * Clock skew between an agent and the CA: the CA backdates notBefore by
 * 30 s, so an agent whose clock is up to that much behind, or ahead by less
 * than an SVID's lifetime, works; beyond that the agent refuses the
 * certificate with a message that names clock skew (its own SVID at
 * attestation, and each workload SVID).
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { clockSkewProblem } from '../agent/svid/clock-skew.js';
import { realClock, type Clock } from '../spiffe/clock.js';
import { agentConfig, createEntry, createJoinToken, tempDir, waitFor } from './support/agent-harness.js';
import { startTestCa, TD, type TestCa } from './support/ca-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** The real clock shifted by `offsetMs` (changeable), as on a host whose clock is off. */
function skewedClock(offsetMs: number): Clock & { offsetMs: number } {
  const c = { offsetMs, now: () => new Date(Date.now() + c.offsetMs), sleep: realClock.sleep };
  return c;
}

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

async function setup(): Promise<{ t: TestCa; dir: string }> {
  const t = await startTestCa();
  cleanups.push(() => t.cleanup());
  const tmp = tempDir('brevis-skew-');
  cleanups.push(tmp.cleanup);
  return { t, dir: tmp.dir };
}

async function agentWith(t: TestCa, dir: string, clock: Clock): Promise<{ agent: RunningAgent; agentId: string }> {
  const tok = await createJoinToken(t);
  await createEntry(t, { spiffeId: `spiffe://${TD}/skew/${Math.abs(clock.now().getTime() - Date.now())}`, parentId: tok.agentId, selectors: ['unix:uid:1000'] });
  const agent = await startAgent(agentConfig(t, dir, { joinToken: tok.token }), { logger: pino({ level: 'silent' }), clock, backoff: { initialMs: 50, maxMs: 200 } });
  cleanups.push(() => agent.close());
  return { agent, agentId: tok.agentId };
}

describe('clock skew', () => {
  it('classifies certificates by the local clock: usable, not valid yet, or expired on arrival, each naming clock skew', () => {
    const nb = new Date('2030-01-01T00:00:00Z');
    const na = new Date('2030-01-01T01:00:00Z');
    expect(clockSkewProblem(nb, na, new Date('2030-01-01T00:00:00Z'))).toBeNull();
    expect(clockSkewProblem(nb, na, new Date('2029-12-31T23:58:00Z'))).toMatch(/^clock skew: the certificate is not valid yet until 2030-01-01T00:00:00.000Z \(120 s from now by this host's clock\)/);
    expect(clockSkewProblem(nb, na, new Date('2030-01-01T01:00:00Z'))).toMatch(/^clock skew: the certificate expired at 2030-01-01T01:00:00.000Z before it arrived/);
    // The repeatable form carries no times.
    expect(clockSkewProblem(nb, na, new Date('2029-12-31T23:58:00Z'), false)).not.toMatch(/\d{4}-/);
  });

  it('tolerates an agent clock 20 s behind (within the 30 s backdate) and 10 minutes ahead (within an SVID lifetime)', async () => {
    for (const offsetMs of [-20_000, 10 * 60_000]) {
      const { t, dir } = await setup();
      const { agent } = await agentWith(t, dir, skewedClock(offsetMs));
      await waitFor(() => agent.cache.isReady() && agent.cache.svidsFor(new Set(['unix:uid:1000'])).length === 1, 10_000, `an SVID with the clock off by ${offsetMs} ms`);
    }
  });

  it('refuses its own SVID at attestation when its clock is 5 minutes behind or 2 hours ahead, saying clock skew', async () => {
    for (const [offsetMs, want] of [
      [-5 * 60_000, /clock skew: the certificate is not valid yet .*this host's clock is behind the CA's/],
      [2 * 3600_000, /clock skew: the certificate expired at .* before it arrived: this host's clock is ahead of the CA's/],
    ] as const) {
      const { t, dir } = await setup();
      const tok = await createJoinToken(t);
      const { logger, lines } = captureLogger();
      const err = await startAgent(agentConfig(t, dir, { joinToken: tok.token }), { logger, clock: skewedClock(offsetMs), backoff: { initialMs: 50, maxMs: 200 } }).then(
        (a) => {
          cleanups.push(() => a.close());
          return null;
        },
        (e: Error) => e,
      );
      // The first attempt burns the one-time token: the agent then stops and asks for a new one.
      expect(err?.message).toMatch(/join.token/i);
      const warned = lines.find((l) => l.msg === 'attestation failed; retrying');
      expect(String(warned?.err)).toMatch(want);
    }
  });

  it('refuses workload SVIDs once its clock falls 5 minutes behind, reporting clock skew per entry, and takes them again when the clock is right', async () => {
    const { t, dir } = await setup();
    const clock = skewedClock(0);
    const { agent, agentId } = await agentWith(t, dir, clock);
    await waitFor(() => agent.cache.isReady(), 10_000, 'the first sync');
    clock.offsetMs = -5 * 60_000;
    const late = await createEntry(t, { spiffeId: `spiffe://${TD}/skew/late`, parentId: agentId, selectors: ['unix:uid:2000'] });
    const report = await agent.syncNow();
    const failure = report.failed.find((f) => f.entryId === late.id);
    expect(failure?.message).toMatch(/^clock skew: the certificate is not valid yet: this host's clock is behind the CA's/);
    expect(agent.cache.svidsFor(new Set(['unix:uid:2000']))).toEqual([]);
    clock.offsetMs = 0;
    const fixed = await agent.syncNow();
    expect(fixed.failed).toEqual([]);
    expect(agent.cache.svidsFor(new Set(['unix:uid:2000'])).map((s) => s.spiffeId)).toEqual([`spiffe://${TD}/skew/late`]);
  });
});
