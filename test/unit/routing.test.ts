// The fallback's policy routing against a fake `ip` that keeps rules and routes like the kernel
// does (including the kernel's loose matching on delete): nothing that is not ours is ever changed.
import test from 'ava';
import { ApnsProxyError } from '../../src/core/errors.js';
import { createPolicyRouting, formatRoute, isOurRoute, routingOwnership } from '../../src/fallback/routing.js';

type Rule = { priority: number; src: 'all'; fwmark?: string; fwmask?: string; iif?: string; table: string };
type Route = Record<string, unknown>;

const NO_TABLE = { stdout: '[', stderr: 'Error: ipv4: FIB table does not exist.\nDump terminated\n', exitCode: 2 };

/** A fake kernel for `ip -4`: rules and per-table routes; records every command. */
class FakeIp {
  rules: Rule[] = [
    { priority: 0, src: 'all', table: '255' },
    { priority: 32766, src: 'all', table: '254' },
    { priority: 32767, src: 'all', table: '253' },
  ];
  tables = new Map<number, Route[]>();
  calls: string[][] = [];

  /** Commands that change something (not `show`). */
  changes(): string[] {
    return this.calls.filter((c) => !c.includes('show')).map((c) => c.join(' '));
  }

  exec = async (args: string[]) => {
    this.calls.push(args);
    const a = args.filter((x) => x !== '-4' && x !== '-j' && x !== '-N');
    const ok = (stdout = '') => ({ stdout, stderr: '', exitCode: 0 });
    const err = (stderr: string) => ({ stdout: '', stderr, exitCode: 2 });
    const opt = (key: string) => (a.includes(key) ? a[a.indexOf(key) + 1] : undefined);
    if (a[0] === 'rule' && a[1] === 'show') return ok(JSON.stringify([...this.rules].sort((x, y) => x.priority - y.priority)));
    if (a[0] === 'rule' && a[1] === 'add') {
      const priority = Math.min(...this.rules.filter((r) => r.priority > 0).map((r) => r.priority)) - 1;
      this.rules.push({ priority, src: 'all', fwmark: opt('fwmark')!, table: opt('lookup')! });
      return ok();
    }
    if (a[0] === 'rule' && a[1] === 'del') {
      // Like the kernel: the first rule matching every attribute given; attributes not given match anything.
      const i = [...this.rules].sort((x, y) => x.priority - y.priority).findIndex((r) =>
        (opt('priority') === undefined || r.priority === Number(opt('priority'))) &&
        (opt('fwmark') === undefined || Number(r.fwmark) === Number(opt('fwmark'))) &&
        (opt('iif') === undefined || r.iif === opt('iif')) &&
        (opt('lookup') === undefined || r.table === opt('lookup')));
      if (i === -1) return err('RTNETLINK answers: No such file or directory');
      const victim = [...this.rules].sort((x, y) => x.priority - y.priority)[i]!;
      this.rules = this.rules.filter((r) => r !== victim);
      return ok();
    }
    if (a[0] === 'route') {
      const table = Number(opt('table'));
      const routes = this.tables.get(table);
      if (a[1] === 'show') return routes ? ok(JSON.stringify(routes)) : NO_TABLE;
      const rest = a.slice(2, a.indexOf('dev'));
      const type = rest.length === 2 ? rest[0] : 'unicast';
      const dst = rest[rest.length - 1] === '0.0.0.0/0' ? 'default' : rest[rest.length - 1];
      const route: Route = { ...(type === 'unicast' ? {} : { type }), dst, dev: opt('dev'), ...(type === 'local' ? { scope: 'host' } : {}), flags: [] };
      const list = routes ?? [];
      const same = list.findIndex((r) => r.dst === dst);
      if (a[1] === 'add') {
        if (same !== -1) return err('RTNETLINK answers: File exists');
        this.tables.set(table, [...list, route]);
      } else if (a[1] === 'replace') {
        this.tables.set(table, same === -1 ? [...list, route] : list.map((r, i) => (i === same ? route : r)));
      } else if (a[1] === 'del') {
        const i = list.findIndex((r) => r.dst === dst && (r.type ?? 'unicast') === type && r.dev === opt('dev'));
        if (i === -1) return err('RTNETLINK answers: No such process');
        this.tables.set(table, list.filter((_, j) => j !== i));
      }
      return ok();
    }
    return err(`fake ip does not understand: ${args.join(' ')}`);
  };
}

const SPEC = { mark: 0x2a, table: 42 };
const OUR_ROUTE = { type: 'local', dst: 'default', dev: 'lo', scope: 'host', flags: [] };
const OPERATOR_ROUTES = [
  { dst: 'default', gateway: '198.51.100.1', dev: 'r1', flags: [] },
  { dst: '203.0.113.0/24', dev: 'r1', scope: 'link', flags: [] },
];

test('ensure on a free table and mark adds our rule and route (add, never replace)', async (t) => {
  const ip = new FakeIp();
  await createPolicyRouting(ip.exec).ensure(SPEC);
  t.deepEqual(ip.changes(), ['-4 rule add fwmark 0x2a lookup 42', '-4 route add local 0.0.0.0/0 dev lo table 42']);
  t.deepEqual(ip.tables.get(42), [OUR_ROUTE]);
  t.true(ip.rules.some((r) => r.fwmark === '0x2a' && r.table === '42'));
});

test('ensure is idempotent: our route in every spelling ip prints is recognised as ours', async (t) => {
  const spellings: Route[] = [
    OUR_ROUTE,
    { type: 'local', dst: '0.0.0.0/0', dev: 'lo', flags: [] },
    { type: 'local', dst: 'default', dev: 'lo', protocol: 'boot', scope: 'host', flags: [] },
    { type: 'local', dst: 'default', dev: 'lo' },
  ];
  for (const route of spellings) {
    const ip = new FakeIp();
    ip.rules.push({ priority: 32765, src: 'all', fwmark: '0x2a', table: '42' });
    ip.tables.set(42, [route]);
    await createPolicyRouting(ip.exec).ensure(SPEC);
    t.deepEqual(ip.changes(), [], JSON.stringify(route));
  }
});

test('ensure refuses a table holding routes that are not ours (E_NOT_OURS) and changes nothing', async (t) => {
  const ip = new FakeIp();
  ip.tables.set(42, structuredClone(OPERATOR_ROUTES));
  const err = await t.throwsAsync(createPolicyRouting(ip.exec).ensure(SPEC), { instanceOf: ApnsProxyError });
  t.is(err!.code, 'E_NOT_OURS');
  t.regex(err!.message, /^fallback\.table: routing table 42 is in use by routes that are not ours \(default via 198\.51\.100\.1 dev r1; 203\.0\.113\.0\/24 dev r1 scope link\)/);
  t.regex(err!.message, /fix: set fallback\.table to a table no route uses/);
  t.deepEqual(ip.changes(), [], 'no rule or route added, replaced or deleted');
  t.deepEqual(ip.tables.get(42), OPERATOR_ROUTES, "the operator's default route is still there");
});

test('a table with our route next to a foreign one, or a look-alike with more attributes, is still refused', async (t) => {
  for (const routes of [[OUR_ROUTE, OPERATOR_ROUTES[1]!], [{ ...OUR_ROUTE, metric: 5 }], [{ ...OUR_ROUTE, dev: 'r0' }], [{ dst: 'default', dev: 'lo', flags: [] }]]) {
    const ip = new FakeIp();
    ip.tables.set(42, structuredClone(routes));
    const err = await t.throwsAsync(createPolicyRouting(ip.exec).ensure(SPEC));
    t.is((err as ApnsProxyError).code, 'E_NOT_OURS', JSON.stringify(routes));
    t.deepEqual(ip.changes(), []);
  }
});

test('ensure refuses our fwmark sent to another table, naming the rule and how to remove a leftover', async (t) => {
  const ip = new FakeIp();
  ip.rules.push({ priority: 100, src: 'all', fwmark: '0x2a', table: '100' });
  const err = await t.throwsAsync(createPolicyRouting(ip.exec).ensure(SPEC));
  t.is((err as ApnsProxyError).code, 'E_NOT_OURS');
  t.regex(err!.message, /^fallback\.mark: ip rule "priority 100 fwmark 0x2a lookup 100" already matches our fwmark 0x2a and is not ours/);
  t.regex(err!.message, /ip rule del priority 100 fwmark 0x2a lookup 100$/);
  t.deepEqual(ip.changes(), []);
});

test('rules that catch our mark with a mask or another selector are not ours; another mark is irrelevant', (t) => {
  const rules = (r: object[]) => JSON.stringify(r);
  const foreign = (r: object) => routingOwnership(rules([r]), '[]', SPEC).foreignRules.length;
  t.is(foreign({ priority: 9, src: 'all', fwmark: '0x2a', iif: 'r0', table: '42' }), 1);
  t.is(foreign({ priority: 9, src: 'all', fwmark: '0x2a', fwmask: '0xff', table: '7' }), 1);
  t.is(foreign({ priority: 9, src: 'all', fwmark: '0x0', fwmask: '0xf00', table: '7' }), 1, '0x2a & 0xf00 == 0');
  t.is(foreign({ priority: 9, src: 'all', fwmark: '0x2b', table: '7' }), 0);
  t.is(foreign({ priority: 9, src: 'all', fwmark: '0x2a', fwmask: '0xffffffff', table: '42' }), 0, 'full mask: ours');
  t.is(foreign({ priority: 9, src: 'all', table: '42' }), 0, 'no fwmark');
  // the running configuration's rule during a reload is ours too
  t.is(routingOwnership(rules([{ priority: 9, src: 'all', fwmark: '0x2a', table: '41' }]), '[]', SPEC, [{ mark: 0x2a, table: 41 }]).foreignRules.length, 0);
});

test('a routing table that does not exist yet is empty, not an error', async (t) => {
  const ip = new FakeIp();
  t.false(ip.tables.has(42));
  await createPolicyRouting(ip.exec).ensure(SPEC);
  t.is(ip.changes().length, 2);
});

test('remove deletes every copy of our exact rule and our route, and nothing else', async (t) => {
  const ip = new FakeIp();
  const operator: Rule[] = [
    { priority: 100, src: 'all', fwmark: '0x2a', iif: 'r0', table: '42' },  // more selectors: not ours
    { priority: 200, src: 'all', fwmark: '0x2b', table: '42' },
  ];
  ip.rules.push(...operator, { priority: 32764, src: 'all', fwmark: '0x2a', table: '42' }, { priority: 32765, src: 'all', fwmark: '0x2a', table: '42' });
  ip.tables.set(42, [OUR_ROUTE, structuredClone(OPERATOR_ROUTES[1]!)]);
  await createPolicyRouting(ip.exec).remove(SPEC);
  t.deepEqual(ip.rules.filter((r) => r.fwmark !== undefined), operator);
  t.deepEqual(ip.tables.get(42), [OPERATOR_ROUTES[1]]);
});

test('remove with nothing of ours in place changes nothing', async (t) => {
  const ip = new FakeIp();
  ip.rules.push({ priority: 100, src: 'all', fwmark: '0x2a', iif: 'r0', table: '42' });
  ip.tables.set(42, structuredClone(OPERATOR_ROUTES));
  await createPolicyRouting(ip.exec).remove(SPEC);
  t.deepEqual(ip.changes(), []);
  t.is(ip.rules.length, 4);
  t.deepEqual(ip.tables.get(42), OPERATOR_ROUTES);
});

test('ip failing is E_ROUTING with its message', async (t) => {
  const routing = createPolicyRouting(async () => ({ stdout: '', stderr: 'RTNETLINK answers: Operation not permitted', exitCode: 2 }));
  const err = await t.throwsAsync(routing.ensure(SPEC));
  t.is((err as ApnsProxyError).code, 'E_ROUTING');
  t.regex(err!.message, /Operation not permitted/);
});

test('isOurRoute and formatRoute', (t) => {
  t.true(isOurRoute({ type: 'local', dst: '0.0.0.0/0', dev: 'lo', scope: 'host', flags: [] }));
  t.false(isOurRoute({ type: 'local', dst: '198.18.0.0/15', dev: 'lo', flags: [] }));
  t.false(isOurRoute({ type: 'local', dst: 'default', dev: 'lo', flags: ['onlink'] }));
  t.is(formatRoute({ dst: 'default', gateway: '198.51.100.1', dev: 'r1', protocol: 'static', metric: 5, flags: [] }), 'default via 198.51.100.1 dev r1 proto static metric 5');
  t.is(formatRoute({ type: 'unreachable', dst: '198.51.100.0/24', flags: [] }), 'unreachable 198.51.100.0/24');
});
