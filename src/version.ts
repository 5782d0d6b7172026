/** The package's version, read from its package.json (found from src/ and from the compiled dist/src/). */
import { existsSync, readFileSync } from 'node:fs';

function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    const url = new URL(rel, import.meta.url);
    if (!existsSync(url)) continue;
    const pkg = JSON.parse(readFileSync(url, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'idprov' && pkg.version) return pkg.version;
  }
  return '0.0.0';
}

/** The package version (for `--version`, health and logs). */
export const VERSION: string = packageVersion();
