#!/usr/bin/env node
// Entry point: parses the command line and wires the real I/O (child processes, files, timers, the logger,
// signals) into the pure core. Exit codes: 0 ok, 1 failed, 2 bad config or usage.
import { runSignals } from './cli/signals.js';  // first: queues SIGHUP/SIGTERM while the rest loads
import { readFile, mkdir } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { runTool } from './cli/exec.js';
import { type Config, DEFAULT_CONFIG_PATH, parseConfigText } from './core/config.js';
import { controlPath, requestControl } from './ops/control.js';
import type { RefreshReport } from './sync/controller.js';
import { ApnsProxyError, ConfigError, errorMessage } from './core/errors.js';
import { type Logger } from './core/log.js';
import { createNftRunner, type NftRunner } from './nft/runner.js';
import type { Resolver } from './dns/client/resolver.js';
import { loadRelayAddon } from './fallback/relay/index.js';
import { createPolicyRouting, type PolicyRouting } from './fallback/routing.js';
import { createStateStore, recordsOf } from './sync/state.js';
import { systemTool } from './core/tools.js';
import type { PreflightOptions, Problem } from './ops/preflight.js';

// What only some commands use is imported when a command needs it: --help,
// render and status do not load the logger, the scheduler, dns-packet or the daemon. System tools run
// through runTool (src/cli/exec.ts, node:child_process): execa costs the daemon ~5 MB.
const createLogger = async (level: Config['log']['level'], format: Config['log']['format']) => (await import('./cli/logger.js')).createLogger(level, format);
const formatProblem = async () => (await import('./ops/preflight.js')).formatProblem;

const USAGE = `usage: apns-proxy <command> [--config PATH]

commands:
  run             the daemon: program last-known-good, then refresh on schedule
  refresh         one resolve-and-program cycle (asks the daemon when one runs)
  status [--json] every name of every set: VIP, state, age, addresses, new connections,
                  from state and the kernel
  render          print the nft script a full sync would apply (needs no root)
  doctor          check kernel features, sysctls, routing, ports and upstream DNS;
                  each problem with the command that fixes it (--devices N: expected devices)
  flush           remove our nft table and the fallback's policy routing

options:
  --config PATH   configuration file (default ${DEFAULT_CONFIG_PATH})
  --json          machine-readable output (status)
  --wide          status: one table of every name with every column
  -h, --help      this text
`;


async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError('--config', path, code === 'ENOENT' ? 'file does not exist' : `cannot be read (${code ?? errorMessage(err)})`);
  }
  return parseConfigText(text, path);
}

function realNft(): NftRunner {
  return createNftRunner(async (file, args, opts) => {
    const r = await runTool(file, args, opts);
    return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode, failed: r.failed, code: (r as { code?: string }).code };
  }, systemTool('nft'));
}

function realRouting(): PolicyRouting {
  return createPolicyRouting(async (args) => {
    const r = await runTool(systemTool('ip'), args);
    if ((r as { code?: string }).code === 'ENOENT') throw new ApnsProxyError('E_ROUTING', 'cannot run ip: not installed (apt-get install iproute2)');
    return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? 1 };
  });
}

async function execTool(file: string, args: string[], input?: string) {
  const r = await runTool(file, args, input === undefined ? {} : { input });
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? 1 };
}

/** What makes touching the kernel with this config unsafe (empty when nothing does). */
async function unsafe(config: Config, opts: PreflightOptions): Promise<Problem[]> {
  const [{ preflight }, { realPreflightProbes }] = await Promise.all([import('./ops/preflight.js'), import('./ops/doctor-probes.js')]);
  return preflight(config, realPreflightProbes(execTool, systemTool('ip'), realNft()), opts);
}

/** Refuses before anything is touched: one line per problem on stderr, exit code 2. */
async function refuse(command: string, problems: readonly Problem[]): Promise<number> {
  const format = await formatProblem();
  for (const p of problems) process.stderr.write(`apns-proxy ${command}: refused, nothing changed: ${format(p)}\n`);
  return 2;
}

async function resolverFactory(logger: Logger): Promise<(c: Config) => Resolver> {
  const { createResolver } = await import('./dns/client/resolver.js');
  return (c) => createResolver({
    servers: c.upstreamDns,
    timeoutMs: c.resolver.timeoutMs,
    // Like the original iRule's debug switch: every query, when log.level is debug.
    onQuery: (e) => logger.isDebug() && logger.debug(`query ${e.name} via ${e.server}/${e.transport ?? '-'}: ${e.outcome} (${e.ms} ms)`),
  });
}

function printReport(r: RefreshReport): void {
  for (const c of r.changes) process.stdout.write(`${c}\n`);
  process.stdout.write(
    `${r.counts.fresh} fresh, ${r.counts.stale} stale, ${r.counts.absent} absent; ${r.sync} sync` +
      `${r.sync === 'delta' ? ` (${r.elementsChanged} elements)` : ''}; resolve ${r.resolveMs} ms, nft ${r.nftMs} ms\n`,
  );
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string' }, json: { type: 'boolean' }, wide: { type: 'boolean' }, devices: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  if (positionals.length > 1) throw new ApnsProxyError('E_USAGE', `unexpected argument ${JSON.stringify(positionals[1])}`);
  const configPath = values.config ?? DEFAULT_CONFIG_PATH;
  if (command === 'doctor') return doctor(configPath, values.devices);
  const config = await loadConfig(configPath);
  const logger = () => createLogger(config.log.level, config.log.format);

  switch (command) {
    case 'render': {
      // Elements from last-known-good state, so the output is what a daemon start would apply.
      const [{ desiredDirect, desiredElements, desiredMapping, desiredPorts }, { renderFullSync, renderRuleset }] = await Promise.all([import('./sync/mapping.js'), import('./nft/render.js')]);
      const state = await createStateStore(config.stateDir).load().catch(() => null);
      const previous = recordsOf(state, config.couriers.template);
      const { snapshot } = desiredMapping({ config, previous, pool: new Map(Object.entries(state?.pool ?? {})), now: Date.now() });
      const { text } = renderRuleset(config);
      process.stdout.write(renderFullSync(text, config.nft.table, desiredElements(snapshot), [], desiredPorts(config, snapshot), desiredDirect(config, snapshot)));
      return 0;
    }
    case 'refresh': {
      const problems = await unsafe(config, { for: 'run' });
      if (problems.length > 0) return refuse('refresh', problems);
      const viaDaemon = (await requestControl(controlPath(config.stateDir), 'refresh', 120_000)) as RefreshReport | undefined;
      let report = viaDaemon;
      if (!report) {
        await mkdir(config.stateDir, { recursive: true });
        const { Controller } = await import('./sync/controller.js');
        const log = await logger();
        const controller = new Controller({
          config, logger: log, nft: realNft(), routing: realRouting(), store: createStateStore(config.stateDir),
          clock: Date.now, makeResolver: await resolverFactory(log),
        });
        await controller.loadState();
        await controller.adoptKernel();
        report = await controller.refresh();
      }
      printReport(report);
      if (!report.ok) process.stderr.write(`apns-proxy refresh: ${report.error}\n`);
      return report.ok ? 0 : 1;
    }
    case 'status': {
      // A corrupt state file must not hide the live map: say so and show the kernel's side.
      const state = await createStateStore(config.stateDir).load().catch((err: unknown) => {
        process.stderr.write(`apns-proxy status: ${errorMessage(err)}; showing the kernel map only\n`);
        return null;
      });
      let live;
      try {
        live = await realNft().readMap(config.nft.table);
      } catch (err) {
        process.stderr.write(`apns-proxy status: cannot read the kernel map (${errorMessage(err)}); showing state only\n`);
      }
      const { formatStatus, statusRows } = await import('./ops/status.js');
      const rows = statusRows(config, state, live, Date.now());
      if (values.json) process.stdout.write(`${JSON.stringify({ savedAt: state?.savedAt ?? null, kernelTable: live === undefined ? 'unreadable' : live ? 'present' : 'absent', couriers: rows }, null, 1)}\n`);
      else {
        if (live === null) process.stdout.write(`kernel: table inet ${config.nft.table} is not loaded (run apns-proxy refresh)\n`);
        process.stdout.write(formatStatus(rows, values.wide === true));
      }
      return 0;
    }
    case 'flush': {
      const problems = await unsafe(config, { for: 'flush' });
      if (problems.length > 0) return refuse('flush', problems);
      const { renderFlush } = await import('./nft/render.js');
      await realNft().apply(renderFlush(config.nft.table));
      await realRouting().remove({ mark: config.fallback.mark, table: config.fallback.table });
      process.stdout.write(`removed table inet ${config.nft.table} and the fallback's policy routing (fwmark 0x${config.fallback.mark.toString(16)} table ${config.fallback.table})\n`);
      return 0;
    }
    case 'run': {
      const problems = await unsafe(config, { for: 'run' });
      if (problems.length > 0) return refuse('run', problems);
      const [{ startDaemon }, { createScheduler }, log] = await Promise.all([import('./ops/daemon.js'), import('./cli/scheduler.js'), logger()]);
      const format = await formatProblem();
      // A read-only or full /var must not stop DNS and forwarding: the daemon reports it instead.
      await mkdir(config.stateDir, { recursive: true }).catch((err: unknown) => log.error(`stateDir ${config.stateDir}: ${errorMessage(err)}`));
      let running = config;
      const daemon = await startDaemon({
        config, logger: log,
        nft: realNft(),
        routing: realRouting(),
        loadNative: () => loadRelayAddon(),
        store: createStateStore(config.stateDir),
        clock: Date.now,
        makeResolver: await resolverFactory(log),
        // setTimeout to each next run (src/cli/scheduler.ts): node-cron paged in ~7 MB of ICU data.
        schedule: createScheduler(),
        // gc exists under node --expose-gc (the unit sets it): a cycle that grew the heap gives it back
        heap: { gc: typeof globalThis.gc === 'function' ? () => globalThis.gc!() : undefined, heap: () => process.memoryUsage() },
        // A reload is refused like a start (the daemon logs it and keeps the running configuration).
        loadConfig: async () => {
          const next = await loadConfig(configPath);
          const problems = await unsafe(next, { for: 'run', alsoOurs: [running.fallback] });
          if (problems.length > 0) throw new ApnsProxyError(problems[0]!.code, `refused: ${problems.map(format).join(' | ')}`);
          running = next;
          return next;
        },
      });
      // Signals that arrived while it started are replayed now (a SIGTERM stops it at once).
      await new Promise<void>((resolve) => runSignals!.attach({ reload: () => void daemon.reload(), stop: resolve }));
      await daemon.stop();
      return 0;
    }
    default:
      throw new ApnsProxyError('E_USAGE', `unknown command ${JSON.stringify(command)} (try --help)`);
  }
}

async function doctor(configPath: string, devicesText: string | undefined): Promise<number> {
  const devices = devicesText === undefined ? 5000 : Number(devicesText);
  if (!Number.isInteger(devices) || devices < 1) throw new ApnsProxyError('E_USAGE', `--devices must be a positive integer, got ${JSON.stringify(devicesText)}`);
  const [{ formatFindings, runDoctor }, { realProbes }] = await Promise.all([import('./ops/doctor.js'), import('./ops/doctor-probes.js')]);
  let config: Config;
  try {
    config = await loadConfig(configPath);
  } catch (err) {
    process.stdout.write(formatFindings([{ check: 'config', level: 'fail', message: errorMessage(err), fix: `edit ${configPath}` }]));
    return 1;
  }
  const native = () => {
    try {
      loadRelayAddon();
      return null;
    } catch (err) {
      return errorMessage(err);
    }
  };
  const base = realProbes(config, execTool, { nft: systemTool('nft'), ip: systemTool('ip') }, native, realNft());
  const { realPairProbes } = await import('./ops/ha/doctor.js');
  const probes = config.ha.enabled ? { ...base, pair: realPairProbes(execTool, { conntrackd: systemTool('conntrackd') }, base) } : base;
  const findings = [{ check: 'config', level: 'ok' as const, message: `${configPath} is valid` }, ...await runDoctor(config, probes, { devices })];
  process.stdout.write(formatFindings(findings));
  return findings.some((f) => f.level === 'fail') ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    const usage = err instanceof ApnsProxyError && (err.code === 'E_CONFIG' || err.code === 'E_USAGE');
    const argErr = (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`apns-proxy: ${errorMessage(err)}\n`);
    process.exitCode = usage || argErr ? 2 : 1;
  },
);
