// `apns-proxy run`: program last-known-good, then refresh on schedule; SIGHUP reloads, SIGTERM stops.
// Real I/O (scheduler, signals, control socket) is handed in by the entry point.
import type { Config } from './config.js';
import { Controller, type ControllerDeps } from './controller.js';
import { controlPath, serveControl } from './control.js';
import { errorMessage } from './errors.js';
import type { Logger } from './log.js';

export interface Scheduled { stop(): void }
export type Scheduler = (expression: string, task: () => void) => Scheduled;

export interface DaemonDeps extends Omit<ControllerDeps, 'logger'> {
  readonly logger: Logger & { setLevel?(level: Config['log']['level']): void };
  readonly schedule: Scheduler;
  readonly loadConfig: () => Promise<Config>;  // re-read on SIGHUP
}

export interface Daemon {
  readonly controller: Controller;
  reload(): Promise<void>;
  stop(): Promise<void>;
}

export async function startDaemon(deps: DaemonDeps): Promise<Daemon> {
  const { logger } = deps;
  const controller = new Controller(deps);
  // Before any resolution: forwarding must work even if upstream DNS is down right now.
  await controller.programFromState();
  let config = deps.config;
  const control = await serveControl(controlPath(config.stateDir), async (cmd) => {
    if (cmd === 'refresh') return controller.refresh();
    if (cmd === 'reload') return void (await reload());
    throw new Error(`unknown command ${JSON.stringify(cmd)}`);
  });
  const scheduleTicks = () => deps.schedule(config.refresh.schedule, () => void controller.tick());
  let job = scheduleTicks();
  void controller.refresh();
  logger.info(`running: ${config.couriers.last - config.couriers.first + 1} couriers, VIPs ${config.vipPrefix.text}, schedule "${config.refresh.schedule}"`);

  async function reload(): Promise<void> {
    let next: Config;
    try {
      next = await deps.loadConfig();
    } catch (err) {
      logger.error(`reload: ${errorMessage(err)}; keeping the running configuration`);
      return;
    }
    if (next.stateDir !== config.stateDir) logger.warn('reload: stateDir changes take effect on restart');
    const scheduleChanged = next.refresh.schedule !== config.refresh.schedule;
    config = next;
    deps.logger.setLevel?.(next.log.level);
    controller.reload(next);
    if (scheduleChanged) {
      job.stop();
      job = scheduleTicks();
    }
    logger.info('reload: configuration reloaded');
    await controller.refresh();
  }

  return {
    controller,
    reload,
    async stop() {
      job.stop();
      await new Promise<void>((resolve) => control.close(() => resolve()));
      await controller.idle();
      logger.info('stopped; the kernel map stays in place (apns-proxy flush removes it)');
    },
  };
}
