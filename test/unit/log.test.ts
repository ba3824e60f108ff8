import { PassThrough } from 'node:stream';
import test from 'ava';
import { createLogger } from '../../src/cli/logger.js';

function capture(level: 'info' | 'debug', format: 'text' | 'json') {
  const stream = new PassThrough();
  const out: string[] = [];
  stream.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)));
  return { logger: createLogger(level, format, stream), out };
}

const tick = () => new Promise((r) => setImmediate(r));

test('text format: "level: message key=value", no timestamp (journald adds one)', async (t) => {
  const { logger, out } = capture('info', 'text');
  logger.info('courier 5: 17.1.1.1,17.1.1.2 → 17.1.1.3');
  logger.warn('refresh: failed', { couriers: 3 });
  logger.debug('query 5-courier.push.apple.com');
  await tick();
  t.deepEqual(out, ['info: courier 5: 17.1.1.1,17.1.1.2 → 17.1.1.3', 'warn: refresh: failed couriers=3']);
  t.false(logger.isDebug());
});

test('json format: one object per line with a timestamp; debug when asked', async (t) => {
  const { logger, out } = capture('debug', 'json');
  logger.debug('query 5-courier.push.apple.com via 203.0.113.53:53/udp: NOERROR (2 ms)');
  await tick();
  const line = JSON.parse(out[0]!) as { level: string; message: string; timestamp: string };
  t.is(line.level, 'debug');
  t.is(line.message, 'query 5-courier.push.apple.com via 203.0.113.53:53/udp: NOERROR (2 ms)');
  t.regex(line.timestamp, /^\d{4}-\d\d-\d\dT/);
  t.true(logger.isDebug());
});

test('setLevel changes what is logged (SIGHUP reload)', async (t) => {
  const { logger, out } = capture('info', 'text');
  logger.setLevel('error');
  logger.warn('hidden');
  logger.error('shown');
  await tick();
  t.deepEqual(out, ['error: shown']);
});

test('json format: exact object with meta between message and timestamp (a fixed clock)', (t) => {
  const stream = new PassThrough();
  const at = new Date('2026-11-30T12:00:00.000Z');
  const logger = createLogger('info', 'json', stream, () => at);
  logger.warn('refresh: failed', { couriers: 3, names: ['a', 'b'] });
  logger.debug('not written at info');
  t.is(String(stream.read()), '{"level":"warn","message":"refresh: failed","couriers":3,"names":["a","b"],"timestamp":"2026-11-30T12:00:00.000Z"}\n');
});

test('every level below the configured one is written, the ones above are not', (t) => {
  const lines = (level: 'error' | 'warn' | 'info' | 'debug') => {
    const stream = new PassThrough();
    const l = createLogger(level, 'text', stream);
    l.error('e'); l.warn('w'); l.info('i'); l.debug('d');
    return String(stream.read() ?? '').trim().split('\n').filter(Boolean).map((s) => s.split(':')[0]);
  };
  t.deepEqual(lines('error'), ['error']);
  t.deepEqual(lines('warn'), ['error', 'warn']);
  t.deepEqual(lines('info'), ['error', 'warn', 'info']);
  t.deepEqual(lines('debug'), ['error', 'warn', 'info', 'debug']);
});

test('an unknown level is refused with the bad value in the message', (t) => {
  t.throws(() => createLogger('verbose' as 'info', 'text', new PassThrough()), { message: /got "verbose"/ });
});
