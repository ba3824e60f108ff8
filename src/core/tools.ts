// Absolute paths for the system tools we run. PATH is not trusted: under `npm run`, node_modules/.bin
// comes first, and a dev dependency (@vercel/nft, pulled in by ava) installs a binary named `nft`.
import { accessSync, constants } from 'node:fs';

const DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin', '/usr/bin', '/bin'];

export function systemTool(name: string, dirs: readonly string[] = DIRS): string {
  for (const dir of dirs) {
    const path = `${dir}/${name}`;
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return name;  // not installed: running it fails with ENOENT, reported with an install hint
}
