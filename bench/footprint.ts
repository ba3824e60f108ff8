// Footprint (issue 14 point 4): idle RSS of `apns-proxy run` beside bare node, unbound and dnsmasq,
// and the time from spawn to the first DNS answer with the upstream silent. As root, after a build:
//
//   node dist/bench/footprint.js [--runs N] [--settle S] [--only id,id] [--quick] [--no-record]
//
// One lab (bench/lib/lab.ts: namespaces apxb<pid>-<hex>-{c,r,u}, deleted at the end). A state file
// of every default name set (couriers 0..200, sandbox couriers 0..200, the bag and provider hosts:
// 408 names) is made once by `apns-proxy refresh` with a live fake-apple; every measured start then copies it and points upstreamDns at
// 203.0.113.99, where nothing answers (silent upstream: ARP for it fails). Each contender listens
// on 192.0.2.1:53 in the router namespace, one at a time, rounds interleaved:
//   - node-bare: node -e 'setInterval(()=>{},1e9)' (no DNS)
//   - node-listeners: node with the unit's environment and the daemon's transports, nothing else (a UDP
//     socket, a TCP listener, an HTTP server): the floor of any Node daemon that serves DNS and a status page
//   - apns-proxy run with no flags, with the unit's environment (read from systemd/apns-proxy.service,
//     so the row measures what ships) and with V8 flags beyond it
//   - unbound and dnsmasq serving the same 408 names as a local zone, forwarding the rest to the silent upstream
// Time to first answer: a UDP prober in the client namespace asks for 1-courier.push.apple.com every
// 5 ms from just before the spawn; the first NOERROR answer with an address ends it. Idle RSS:
// VmRSS from /proc, median of 5 samples 1 s apart, after `settle` seconds. DNS q/s: 3 s of 32
// queries in flight for courier names, with the native UDP fast path (default) and without it
// (APNS_PROXY_DNS_NATIVE=0: every answer in JavaScript, which is what V8 flags such as --lite-mode slow).
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Lab, createLab } from './lib/lab.js';
import { type Bg, sleep } from './lib/proc.js';
import { median, table } from './lib/report.js';
import { type ApnsConfig, allSetsScenario, cli, nameSetsConfig } from './lib/router.js';

const COURIERS = 200;
const SILENT = '203.0.113.99';
const LISTEN = '192.0.2.1';

interface Contender {
  readonly id: string;
  readonly label: string;
  readonly dns: boolean;
  start(lab: Lab): Bg;
  readonly cleanup?: (lab: Lab) => Promise<void>;
  readonly qps?: boolean;
}

interface Sample { id: string; rssMb: number; firstAnswerMs: number | null; split: string; qps?: number; qpsJs?: number }

function log(s: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
}

/** "anon A MB, file F MB": where the resident memory is (private heap and stacks vs mapped files such as the node binary). */
function rssSplit(pid: number): string {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
  return `anon ${kb('RssAnon').toFixed(1)} MB, file ${kb('RssFile').toFixed(1)} MB`;
}

function vmRssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/** The client-side prober: `first` (time of the first answer, epoch ms) or `qps SECONDS INFLIGHT`. */
const PROBER = `
import dgram from 'node:dgram';
const [mode, a, b] = process.argv.slice(2);
const names = Array.from({ length: ${COURIERS} }, (_, i) => (i + 1) + '-courier.push.apple.com');
function query(id, name) {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  const h = Buffer.alloc(12); h.writeUInt16BE(id, 0); h.writeUInt16BE(0x0100, 2); h.writeUInt16BE(1, 4);
  return Buffer.concat([h, ...labels, Buffer.from([0, 0, 1, 0, 1])]);
}
const s = dgram.createSocket('udp4');
s.on('error', () => {});
let id = 0;
if (mode === 'first') {
  s.on('message', (m) => { if ((m[3] & 15) === 0 && m.readUInt16BE(6) > 0) { console.log(JSON.stringify({ at: Date.now() })); process.exit(0); } });
  s.bind(0, () => { console.log('ready'); setInterval(() => s.send(query(++id & 0xffff, names[0]), 53, '${LISTEN}'), 5); });
  setTimeout(() => { console.log(JSON.stringify({ at: null })); process.exit(0); }, 30000);
} else {
  const seconds = Number(a), inflight = Number(b);
  let answered = 0, done = false;
  const send = () => { if (!done) s.send(query(++id & 0xffff, names[id % names.length]), 53, '${LISTEN}'); };
  s.on('message', () => { answered++; send(); });
  s.bind(0, () => {
    for (let i = 0; i < inflight; i++) send();
    const t = setInterval(() => { for (let i = 0; i < 4; i++) send(); }, 100);  // replaces lost ones
    setTimeout(() => { done = true; clearInterval(t); console.log(JSON.stringify({ qps: answered / seconds })); process.exit(0); }, seconds * 1000);
  });
}
`;

/** The transports of the daemon and nothing else, on the addresses the daemon would use (floor row). */
const LISTENERS = `
const dgram = require('node:dgram'), net = require('node:net'), http = require('node:http');
dgram.createSocket('udp4').on('message', () => {}).bind(53, '${LISTEN}');
net.createServer((s) => s.destroy()).listen(53, '${LISTEN}');
http.createServer((q, r) => r.end('ok')).listen(9523, '127.0.0.1');
`;

/** The Environment= lines of the systemd unit, as systemd would set them (one KEY=VALUE per line here). */
function unitEnvironment(file: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^Environment=(?:"([^"]*)"|(\S+))\s*$/.exec(line.trim());
    const kv = m?.[1] ?? m?.[2];
    if (!kv) continue;
    const eq = kv.indexOf('=');
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return env;
}

/** name → VIP of every row `status --json` lists (the arrays of rows with a vip, one per name set). */
function zoneOf(statusJson: string): { name: string; vip: string }[] {
  const doc = JSON.parse(statusJson) as Record<string, unknown>;
  return Object.values(doc).filter(Array.isArray).flat()
    .filter((row): row is { name: string; vip: string } => typeof row?.name === 'string' && typeof row?.vip === 'string');
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { only: { type: 'string' }, runs: { type: 'string' }, settle: { type: 'string' }, quick: { type: 'boolean' }, 'no-record': { type: 'boolean' } } });
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, nftables)');
  const quick = values.quick ?? false;
  const runs = Number(values.runs ?? (quick ? 1 : 3));
  const settle = Number(values.settle ?? (quick ? 5 : 20));
  const started = new Date();
  const lab = await createLab();
  log(`lab ${lab.base}`);
  const samples: Sample[] = [];
  let versions = '';
  try {
    // --- the state file: one daemon with a live upstream resolves every default name set, then stops
    await lab.setScenario(allSetsScenario());
    const seed = nameSetsConfig(lab, 'seed');
    const seedCfg = JSON.parse(readFileSync(seed.path, 'utf8')) as Record<string, unknown>;
    const r = await cli(lab, seed, ['refresh'], 120000);
    if (!/\d+ fresh/.test(r.stdout)) throw new Error(`seed refresh: ${r.stdout} ${r.stderr}`);
    const zone = zoneOf((await cli(lab, seed, ['status', '--json'])).stdout);
    if (zone.length < 400) throw new Error(`seed: ${zone.length} names in status --json, expected every default set (>= 400)`);
    await cli(lab, seed, ['flush']);
    const stateSeed = path.join(lab.dir, 'state-seed-copy');
    cpSync(seed.stateDir, stateSeed, { recursive: true });
    // The measured daemons: defaults except the lab's addresses, DNS on 192.0.2.1, a silent upstream.
    const cfg: ApnsConfig = { path: path.join(lab.dir, 'apns-measured.json'), stateDir: path.join(lab.dir, 'state-measured') };
    writeFileSync(cfg.path, JSON.stringify({
      ...seedCfg, upstreamDns: [SILENT], stateDir: cfg.stateDir,
      dns: { listen: [`${LISTEN}:53`], allowClients: ['192.0.2.0/24'], rateLimit: 0 },
      fallback: { enabled: true }, log: { level: 'info' },
    }, null, 1));
    const prober = path.join(lab.dir, 'prober.mjs');
    writeFileSync(prober, PROBER);
    writeFileSync(path.join(lab.dir, 'unbound.conf'), [
      'server:', `  interface: ${LISTEN}`, '  port: 53', '  access-control: 192.0.2.0/24 allow', '  username: ""', '  chroot: ""',
      `  directory: "${lab.dir}"`, '  pidfile: ""', '  use-syslog: no', '  logfile: ""', '  num-threads: 1', '  do-ip6: no',
      '  local-zone: "push.apple.com." static',
      ...zone.map((z) => `  local-data: "${z.name}. 60 IN A ${z.vip}"`),
      'forward-zone:', '  name: "."', `  forward-addr: ${SILENT}`, '',
    ].join('\n'));
    writeFileSync(path.join(lab.dir, 'dnsmasq.hosts'), zone.map((z) => `${z.vip} ${z.name}`).join('\n') + '\n');
    const node = process.execPath;
    const cliJs = path.join(lab.root, 'dist/src/cli.js');
    const unit = unitEnvironment(path.join(lab.root, 'systemd/apns-proxy.service'));
    const assignments = (env: Record<string, string>) => Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const unitText = assignments(unit).join(' ');
    // V8 flags such as --no-opt are refused in NODE_OPTIONS: they go on the command line.
    // `env` execs node: the pid measured is node's; env -u drops what the bench's own shell may carry
    const nodeWith = (env: Record<string, string>, ...args: string[]) => ['env', '-u', 'NODE_OPTIONS', '-u', 'MALLOC_ARENA_MAX', ...assignments(env), node, ...args];
    const daemon = (id: string, label: string, env: Record<string, string>, flags: string[] = [], qps = true): Contender => ({
      id, label, dns: true, qps,
      start: (l) => {
        rmSync(cfg.stateDir, { recursive: true, force: true });
        cpSync(stateSeed, cfg.stateDir, { recursive: true });
        return l.bg(l.ns.r, id, nodeWith(env, ...flags, cliJs, 'run', '--config', cfg.path));
      },
      cleanup: async (l) => { await cli(l, cfg, ['flush']); },
    });
    const all: Contender[] = [
      { id: 'node-bare', label: "`node -e 'setInterval(()=>{},1e9)'`", dns: false, start: (l) => l.bg(l.ns.r, 'node-bare', [node, '-e', 'setInterval(()=>{},1e9)']) },
      { id: 'node-listeners', label: "node with the unit's environment, a UDP socket, a TCP listener and an HTTP server (nothing else: the floor of a Node daemon with these transports)", dns: false,
        start: (l) => l.bg(l.ns.r, 'node-listeners', nodeWith(unit, '-e', LISTENERS)) },
      daemon('run', '`apns-proxy run` (no node flags, no environment)', {}),
      daemon('run-semi1', '`apns-proxy run`, `NODE_OPTIONS=--max-semi-space-size=1` (the unit before this change)', { NODE_OPTIONS: '--max-semi-space-size=1' }),
      daemon('run-unit', `\`apns-proxy run\` as systemd/apns-proxy.service runs it (\`${unitText}\`)`, unit),
      daemon('run-unit-noopt', '… the unit plus `node --no-opt` (no TurboFan)', unit, ['--no-opt']),
      daemon('run-unit-lite', '… the unit plus `node --lite-mode`', unit, ['--lite-mode']),
      { id: 'unbound', label: `unbound (local zone of the ${zone.length} names)`, dns: true, start: (l) => l.bg(l.ns.r, 'unbound', ['unbound', '-d', '-c', path.join(l.dir, 'unbound.conf')]) },
      { id: 'dnsmasq', label: `dnsmasq (the ${zone.length} names as a hosts file)`, dns: true, start: (l) => l.bg(l.ns.r, 'dnsmasq', [
        'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--listen-address=${LISTEN}`, '--bind-interfaces',
        '--port=53', `--addn-hosts=${path.join(l.dir, 'dnsmasq.hosts')}`, `--server=${SILENT}`, '--user=root', '--pid-file=', '--cache-size=1000']) },
    ];
    const only = values.only?.split(',');
    const contenders = all.filter((c) => !only || only.includes(c.id));
    if (contenders.length === 0) throw new Error(`--only: none of ${all.map((c) => c.id).join(', ')}`);
    versions = [
      `node ${process.version}`,
      `unbound ${/Version (\S+)/.exec((await lab.exec('', ['unbound', '-V'], { check: false })).stdout)?.[1] ?? '?'}`,
      `dnsmasq ${/version (\S+)/.exec((await lab.exec('', ['dnsmasq', '--version'], { check: false })).stdout)?.[1] ?? '?'}`,
    ].join(', ');

    for (let round = 1; round <= runs; round++) {
      for (const c of contenders) {
        let firstAnswerMs: number | null = null;
        let probe: Bg | undefined;
        if (c.dns) {
          probe = lab.bg(lab.ns.c, 'prober', [node, prober, 'first']);
          await probe.waitFor(/^ready$/, 10000);
        }
        const t0 = Date.now();
        const proc = c.start(lab);
        try {
          if (probe) {
            const line = await probe.waitFor(/^\{/, 35000);
            const at = (JSON.parse(line) as { at: number | null }).at;
            firstAnswerMs = at === null ? null : at - t0;
          }
          await sleep(settle * 1000);
          const rss: number[] = [];
          for (let i = 0; i < 5; i++) { rss.push(vmRssMb(proc.pid)); await sleep(1000); }
          const s: Sample = { id: c.id, rssMb: median(rss), firstAnswerMs, split: rssSplit(proc.pid) };
          if (c.dns) {
            const q = await lab.exec(lab.ns.c, [node, prober, 'qps', quick ? '1' : '3', '32'], { timeoutMs: 20000 });
            s.qps = (JSON.parse(q.stdout.trim().split('\n').pop()!) as { qps: number }).qps;
          }
          samples.push(s);
          log(`round ${round} ${c.id}: idle RSS ${s.rssMb.toFixed(1)} MB (${s.split}), first answer ${firstAnswerMs ?? '-'} ms${s.qps ? `, ${Math.round(s.qps)} q/s` : ''}`);
        } finally {
          await proc.stop(10000);
          await probe?.stop(1000);
          await c.cleanup?.(lab);
        }
        // the same start with every answer in JavaScript (no native fast path): what the V8 flags cost DNS
        if (c.qps) {
          process.env.APNS_PROXY_DNS_NATIVE = '0';
          const p = c.start(lab);
          delete process.env.APNS_PROXY_DNS_NATIVE;
          try {
            await sleep(3000);
            const q = await lab.exec(lab.ns.c, [node, prober, 'qps', quick ? '1' : '3', '32'], { timeoutMs: 20000 });
            samples[samples.length - 1]!.qpsJs =
              (JSON.parse(q.stdout.trim().split('\n').pop()!) as { qps: number }).qps;
          } finally {
            await p.stop(10000);
            await c.cleanup?.(lab);
          }
        }
      }
    }
    const rows = contenders.map((c) => {
      const mine = samples.filter((s) => s.id === c.id);
      const med = (f: (s: Sample) => number | null | undefined) => {
        const v = mine.map(f).filter((x): x is number => typeof x === 'number');
        return v.length ? median(v) : undefined;
      };
      const rss = med((s) => s.rssMb);
      const first = med((s) => s.firstAnswerMs);
      const q = med((s) => s.qps);
      const qj = med((s) => s.qpsJs);
      return [c.label, rss === undefined ? '-' : `${rss.toFixed(1)} MB`, mine.map((s) => s.rssMb.toFixed(1)).join(' / '),
        c.dns ? (first === undefined ? 'no answer' : `${Math.round(first)} ms`) : '-',
        q === undefined ? '-' : `${Math.round(q)}`, qj === undefined ? '-' : `${Math.round(qj)}`];
    });
    const cmd = `node dist/bench/footprint.js${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`;
    const block = [
      '## Footprint',
      '',
      `Measured ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC by \`${cmd}\` (as root, after \`npm run build\`; ${runs} interleaved round(s), settle ${settle} s; ${versions}).`,
      `Each contender alone in the router namespace on ${LISTEN}:53; apns-proxy with default settings (fallback on, DNS on), a state file of every default name set (couriers 0..200, sandbox couriers 0..200, the bag and provider hosts)`,
      `and upstream DNS silent (${SILENT}, nobody there). Idle RSS: VmRSS, median of 5 samples`,
      '1 s apart after settling, median over rounds (every round listed). First answer: spawn to the first NOERROR answer for 1-courier.push.apple.com,',
      'asked every 5 ms from the client namespace. q/s: 32 queries in flight for the 200 names, native UDP fast path on (the default) and off (every answer in JavaScript);',
      'the prober is one node process, and q/s is bounded by it: the columns price a flag\'s JavaScript cost, not the server\'s capacity (bench/dns measures that).',
      '',
      table(['contender', 'idle RSS', 'per round', 'spawn → first DNS answer', 'q/s (native path)', 'q/s (JS path)'], rows, '---|---:|---|---:|---:|---:'),
    ].join('\n');
    process.stdout.write(`${block}\n`);
    if (!values['no-record']) {
      const file = path.join(lab.root, 'bench/RESULTS.md');
      const old = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n';
      const wrapped = `<!-- bench:footprint -->\n${block}\n<!-- /bench:footprint -->\n`;
      const re = /<!-- bench:footprint -->\n[\s\S]*?<!-- \/bench:footprint -->\n?/;
      writeFileSync(file, re.test(old) ? old.replace(re, wrapped) : `${old.trimEnd()}\n\n${wrapped}`);
      log('wrote bench/RESULTS.md (footprint)');
    }
  } finally {
    await lab.destroy();
  }
  return 0;
}

main().then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`footprint: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
