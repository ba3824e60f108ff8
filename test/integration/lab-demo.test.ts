// The lab demo: `npm run lab -- --check` runs the lab demo non-interactively and asserts the
// whole path (router DNS → VIP → kernel or fallback → courier server, the upstream-silent failure,
// last-known-good, the fallback serving a never-resolved courier). Also --keep and `lab down`.
// Needs root; fails (never skips) without. LAB_NO_SETUP=1: `npm test` has just built the tree.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../../lab/lab.js';
import { systemTool } from '../../src/core/tools.js';

const test = anyTest as TestFn<{ registry: string }>;
const IP = systemTool('ip');

test.before((t) => {
  t.context = { registry: mkdtempSync(path.join(tmpdir(), 'apns-proxy-lab-run-')) };
});

const env = (t: { context: { registry: string } }) => ({
  ...process.env,
  LAB_NO_SETUP: '1',
  APNS_PROXY_LAB_RUN_DIR: t.context.registry,   // never touch a lab someone keeps on this machine
  APNS_PROXY_LAB_KEEP_MAX_SECONDS: '300',       // a crashed test run leaves nothing up for long
});

const lab = (t: { context: { registry: string } }, args: string[]) =>
  execa('npm', ['run', '--silent', 'lab', '--', ...args], { cwd: repoRoot(), reject: false, timeout: 110_000, env: env(t) });

test.after.always(async (t) => {
  if (!t.context.registry) return;
  await lab(t, ['down']);
  rmSync(t.context.registry, { recursive: true, force: true });
});

async function namespaces(): Promise<string[]> {
  const r = await execa(IP, ['netns', 'list'], { reject: false });
  return r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter(Boolean);
}

/** The demo's failed checks (with their detail line) and its tail: the checks are far above the tail. */
const failed = (out: string): string => [...(out.match(/\[FAIL\].*\n.*\n/g) ?? []), '…', out.slice(-4000)].join('');

const baseOf = (out: string): string | undefined => /apns-proxy lab (apx\d+-[0-9a-f]{4}):/.exec(out)?.[1];

test.serial('npm run lab -- --check: the whole path end to end, with the failure demonstration, then nothing left', async (t) => {
  const r = await lab(t, ['--check']);
  const out = r.stdout + r.stderr;
  t.is(r.exitCode, 0, failed(out));
  const summary = /lab check: (\d+) passed, (\d+) failed/.exec(out);
  t.truthy(summary, out.slice(-3000));
  t.is(summary?.[2], '0');
  t.true(Number(summary?.[1]) >= 25, `${summary?.[1]} assertions ran`);
  t.notRegex(out, /\[FAIL\]/);
  // the narrative a newcomer reads
  t.regex(out, /client# dig @192\.0\.2\.1 5-courier\.push\.apple\.com A\n\s+→ NOERROR\s+A 198\.18\.100\.5/);
  t.regex(out, /HELLO from courier server 203\.0\.113\.17:5223 — carried by the kernel/);
  t.regex(out, /HELLO from courier server 203\.0\.113\.42:5223 — carried by the userspace fallback/);
  t.regex(out, /router# apns-proxy status\n\s+│ COURIER\s+VIP\s+STATE/);
  t.regex(out, /router# nft list map inet apns_proxy couriers4\n\s+│ table inet apns_proxy \{/);
  t.regex(out, /3\. Failure: upstream DNS goes silent/);
  // the bag over HTTPS (step 5b): the certificate made for init.push.apple.com, verified
  t.regex(out, /client# GET https:\/\/init\.push\.apple\.com\/ via 198\.18\.102\.\d+:443 .*\n\s+→ HTTPS 200 from bag server 203\.0\.113\.8[01]:443, certificate for init\.push\.apple\.com verified/);
  t.regex(out, /\[ok\] the bag came over TLS from init\.push\.apple\.com's server/);
  t.regex(out, /0 fresh, 49 stale, 11 absent/);
  const base = baseOf(out);
  t.truthy(base);
  t.false((await namespaces()).some((n) => n.startsWith(`${base}-`)), 'the namespaces are gone');
  t.regex(out, new RegExp(`lab ${base} removed`));
});

test.serial('npm run lab -- --keep leaves a working lab up; lab down removes it', async (t) => {
  const r = await lab(t, ['--check', '--keep']);
  const out = r.stdout + r.stderr;
  t.is(r.exitCode, 0, failed(out));
  t.regex(out, /lab check: \d+ passed, 0 failed/);
  t.regex(out, /The lab stays up\. Explore it/);
  const base = baseOf(out)!;
  t.truthy(base);
  t.regex(out, new RegExp(`ip netns exec ${base}-c bash`));
  t.deepEqual((await namespaces()).filter((n) => n.startsWith(`${base}-`)).sort(), [`${base}-c`, `${base}-r`, `${base}-u`]);
  t.true(readdirSync(t.context.registry).includes(`${base}.json`));

  // still working after the command returned: the daemon answers DNS and the kernel forwards
  const dig = await execa(IP, ['netns', 'exec', `${base}-c`, systemTool('dig'), '+short', '+time=2', '+tries=1', '@192.0.2.1', '9-courier.push.apple.com'], { reject: false });
  t.is(dig.stdout.trim(), '198.18.100.9');
  const probe = await execa(IP, ['netns', 'exec', `${base}-c`, process.execPath, path.join(repoRoot(), 'dist/test/fixtures/probe.js'), 'connect', '198.18.100.9', '5223'], { reject: false });
  t.is((JSON.parse(probe.stdout) as { hellos: string[] }).hellos.length, 1, probe.stdout + probe.stderr);

  const down = await lab(t, ['down']);
  t.is(down.exitCode, 0, down.stderr);
  t.regex(down.stdout, new RegExp(`removed lab ${base}`));
  t.false((await namespaces()).some((n) => n.startsWith(`${base}-`)), 'the namespaces are gone');
  t.false(readdirSync(t.context.registry).some((f) => f.endsWith('.json')));
  const again = await lab(t, ['down']);
  t.is(again.exitCode, 0);
  t.regex(again.stdout, /no kept lab found/);
});
