// The ruleset template, nft/apns-proxy.nft at the package root (a file operators read), loaded once.
// nft/ owns it: nothing above this folder knows where it lives.
import { readFileSync } from 'node:fs';

const TEMPLATE_URL = new URL('../../../nft/apns-proxy.nft', import.meta.url);  // dist/src/nft/ → <root>/nft/

let cached: string | undefined;

export function rulesetTemplate(): string {
  cached ??= readFileSync(TEMPLATE_URL, 'utf8');
  return cached;
}
