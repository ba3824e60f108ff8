import { EventEmitter } from 'node:events';
import test from 'ava';
import { QueuedSignals } from '../../src/cli/signals.js';

function harness() {
  const proc = new EventEmitter();
  const signals = new QueuedSignals(proc as unknown as NodeJS.Process);
  const calls: string[] = [];
  const targets = { reload: () => calls.push('reload'), stop: () => calls.push('stop') };
  return { proc, signals, calls, targets };
}

test('SIGHUPs while starting are queued and replayed as one reload once the daemon is ready', (t) => {
  const { proc, signals, calls, targets } = harness();
  proc.emit('SIGHUP');
  proc.emit('SIGHUP');
  t.deepEqual(signals.pending, { reloads: 2, stop: false });
  t.deepEqual(calls, []);
  signals.attach(targets);
  t.deepEqual(calls, ['reload']);
  proc.emit('SIGHUP');
  t.deepEqual(calls, ['reload', 'reload'], 'after start, each HUP reloads');
});

test('SIGTERM while starting stops the daemon as soon as it is ready; stop wins over queued reloads', (t) => {
  const { proc, signals, calls, targets } = harness();
  proc.emit('SIGHUP');
  proc.emit('SIGTERM');
  proc.emit('SIGINT');
  signals.attach(targets);
  t.deepEqual(calls, ['stop']);
  proc.emit('SIGHUP');
  t.deepEqual(calls, ['stop'], 'no reload while stopping');
});
