// doctor against a real kernel in the lab's router namespace.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { type Lab, createLab, distPath, nodeBin, writeLabConfig } from '../../lab/lab.js';

const test = anyTest as TestFn<{ lab: Lab; config: string }>;
const CLI = distPath('src/cli.js');

test.before(async (t) => {
  const lab = await createLab();
  const config = await writeLabConfig(lab, { dns: { listen: ['192.0.2.1:53'] }, metrics: { listen: [] } });
  t.context = { lab, config };
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
});

const cli = (t: { context: { lab: Lab; config: string } }, ...args: string[]) =>
  t.context.lab.exec(t.context.lab.ns.router, nodeBin(), [CLI, ...args, '--config', t.context.config], { reject: false });

test.serial('before the first refresh: policy routing missing is a warning, nothing fails', async (t) => {
  const r = await cli(t, 'doctor');
  t.is(r.exitCode, 0, r.stdout);
  t.regex(r.stdout, /^WARN  policy routing: missing ip rule fwmark 0x2a lookup 42 and local route in table 42/m);
  t.regex(r.stdout, /^ok    upstream dns: 203\.0\.113\.53:53 answers 1-courier\.push\.apple\.com: 203\.0\.113\.\d+,203\.0\.113\.\d+$/m);
  t.regex(r.stdout, /^ok    dns port: 192\.0\.2\.1:53 is free for the DNS server$/m);
});

test.serial('after refresh every check is ok', async (t) => {
  t.is((await cli(t, 'refresh')).exitCode, 0);
  const r = await cli(t, 'doctor');
  t.is(r.exitCode, 0, r.stdout);
  t.regex(r.stdout, /\nno problems$/);
  t.notRegex(r.stdout, /WARN|FAIL/);
});

test.serial('a forward chain that drops our flows fails, and the printed fix repairs it', async (t) => {
  const { lab } = t.context;
  await lab.exec(lab.ns.router, 'nft', ['-f', '-'], { input: 'table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy drop;\n\t}\n}\n' });
  const bad = await cli(t, 'doctor');
  t.is(bad.exitCode, 1);
  const fix = /^ {6}fix: (nft insert rule inet filter forward ct status dnat accept)$/m.exec(bad.stdout);
  t.truthy(fix, bad.stdout);
  const direct = /^ {6}fix: (nft insert rule inet filter forward ct mark and 0x20000000 == 0x20000000 accept)$/m.exec(bad.stdout);
  t.truthy(direct, `direct connections need their own accept: ${bad.stdout}`);
  for (const f of [fix![1]!, direct![1]!]) {
    const [tool, ...args] = f.split(' ');
    await lab.exec(lab.ns.router, tool!, args);  // the lab resolves `nft` to the system binary
  }
  const good = await cli(t, 'doctor');
  t.is(good.exitCode, 0, good.stdout);
  // ...and the forwarded path really works through that chain, through a VIP and directly
  const c = await lab.probe(['connect', '198.18.100.5', '5223']);
  t.is(c.hellos.length, 1);
  const d = await lab.probe(['connect', c.hellos[0].split(':')[0], '5223']);
  t.is(d.hellos.length, 1, `a direct connection to courier 5's address: ${JSON.stringify(d)}`);
});

test.serial('ip_forward off and upstream silent are failures', async (t) => {
  const { lab } = t.context;
  await lab.exec(lab.ns.router, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=0']);
  await lab.setScenario({ live: 50, mode: 'silent' });
  try {
    const r = await cli(t, 'doctor');
    t.is(r.exitCode, 1);
    t.regex(r.stdout, /^FAIL  ip_forward: net\.ipv4\.ip_forward = 0/m);
    t.regex(r.stdout, /^FAIL  upstream dns: 203\.0\.113\.53:53 gave no usable answer for 1-courier\.push\.apple\.com: E_TIMEOUT/m);
    t.regex(r.stdout, /\n2 problem\(s\), 0 warning\(s\)$/);
  } finally {
    await lab.exec(lab.ns.router, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
    await lab.setScenario({ live: 50 });
  }
});

test.serial('an invalid config is reported as a failed check', async (t) => {
  const { lab } = t.context;
  const bad = join(lab.dir, 'bad.json');
  await writeFile(bad, '{"ports": [0]}');
  const r = await lab.exec(lab.ns.router, nodeBin(), [CLI, 'doctor', '--config', bad], { reject: false });
  t.is(r.exitCode, 1);
  t.regex(r.stdout, /^FAIL  config: config: ports\[0\]: must be an integer in 1\.\.65535, got 0/m);
});
