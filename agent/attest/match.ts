/**
 * The matching rule between a registration entry and a workload: an entry
 * applies when every one of its selectors is among the workload's attested
 * selectors (the workload may have more). An entry without selectors matches
 * nothing: an empty selector list is a mistake, not a wildcard.
 *
 * Selectors are compared as exact `type:value` strings (case-sensitive).
 */
export function entryMatches(entrySelectors: readonly string[], workloadSelectors: ReadonlySet<string>): boolean {
  if (entrySelectors.length === 0) return false;
  for (const s of entrySelectors) if (!workloadSelectors.has(s)) return false;
  return true;
}
