/**
 * Where Brevis's native addons are: built by node-gyp at install
 * (binding.gyp) into build/Release/ under the package root. The code runs
 * both from source (tests) and compiled (dist/), so the root is found by
 * walking up to the first package.json.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: the first ancestor of this module holding package.json. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** The path of addon `name` (build/Release/NAME.node under the package root). */
export function addonPath(name: string): string {
  return path.join(packageRoot(), 'build', 'Release', `${name}.node`);
}

/** Loads addon `name`; throws what require throws when it is missing or does not load. */
export function loadAddon<T>(name: string): T {
  return createRequire(import.meta.url)(addonPath(name)) as T;
}
