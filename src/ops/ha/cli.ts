#!/usr/bin/env node
// Renders one router's keepalived.conf and conntrackd.conf from pair.json and contrib/ha (what
// scripts/install.sh --ha runs; README "Running a pair"):
//
//   node dist/src/ops/ha/cli.js --pair /etc/apns-proxy/ha/pair.json --router a|b [--keepalived FILE] [--conntrackd FILE] [--notify PATH]
//
// Without --keepalived/--conntrackd it prints both. It always prints (stderr) the config.json keys
// both routers need. Exit codes: 0 ok, 2 bad pair.json or usage.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errorMessage } from '../../core/errors.js';
import { DEFAULT_PATHS, pairConfigKeys, parsePair, renderConntrackd, renderKeepalived } from './render.js';

const CONTRIB = new URL('../../../../contrib/ha/', import.meta.url);  // dist/src/ops/ha/ → <root>/contrib/ha/

function writeAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text, { mode: 0o644 });
  renameSync(`${file}.tmp`, file);
}

try {
  const { values } = parseArgs({ options: { pair: { type: 'string' }, router: { type: 'string' }, keepalived: { type: 'string' }, conntrackd: { type: 'string' }, notify: { type: 'string' } } });
  if (!values.pair || (values.router !== 'a' && values.router !== 'b')) throw new Error('usage: cli.js --pair FILE --router a|b [--keepalived FILE] [--conntrackd FILE] [--notify PATH]');
  const pair = parsePair(JSON.parse(readFileSync(values.pair, 'utf8')));
  const paths = { ...DEFAULT_PATHS, ...(values.notify ? { notify: values.notify } : {}) };
  const ka = renderKeepalived(readFileSync(new URL('keepalived.conf.in', CONTRIB), 'utf8'), pair, values.router, paths);
  const ct = renderConntrackd(readFileSync(new URL('conntrackd.conf.in', CONTRIB), 'utf8'), pair, values.router, paths);
  if (values.keepalived) writeAtomic(values.keepalived, ka); else process.stdout.write(ka);
  if (values.conntrackd) writeAtomic(values.conntrackd, ct); else process.stdout.write(ct);
  process.stderr.write(`config.json on both routers needs (merged into the existing sections; dns.allowClients stays yours):\n${JSON.stringify(pairConfigKeys(pair, paths), null, 2)}\n`);
} catch (err) {
  process.stderr.write(`apns-proxy-ha: ${errorMessage(err)}\n`);
  process.exitCode = 2;
}
