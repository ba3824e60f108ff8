// Signal handling for `run`, installed before any other module loads: cli.ts imports this module
// first, and ESM evaluates imports in order. A SIGHUP (reload) or SIGTERM that arrives while the
// daemon starts is queued instead of killing it (systemd counts a death by SIGHUP as clean).
// Node itself restores default dispositions while it boots (~60 ms); the unit's
// RestartForceExitStatus=SIGHUP covers that window.

export interface SignalTargets {
  reload(): void;
  stop(): void;
}

export class QueuedSignals {
  private reloads = 0;
  private stopping = false;
  private targets: SignalTargets | undefined;

  constructor(private readonly proc: Pick<NodeJS.Process, 'on'> = process) {
    proc.on('SIGHUP', () => this.reload());
    proc.on('SIGTERM', () => this.stop());
    proc.on('SIGINT', () => this.stop());
  }

  /** The daemon is ready: replays what arrived meanwhile (one reload however many HUPs; stop wins). */
  attach(targets: SignalTargets): void {
    this.targets = targets;
    if (this.stopping) targets.stop();
    else if (this.reloads > 0) targets.reload();
  }

  get pending(): { reloads: number; stop: boolean } {
    return { reloads: this.reloads, stop: this.stopping };
  }

  private reload(): void {
    this.reloads++;
    if (!this.stopping) this.targets?.reload();
  }

  private stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.targets?.stop();
  }
}

/** Only `run` queues signals: every other command keeps the default (a signal ends it). */
export const runSignals: QueuedSignals | undefined = process.argv.slice(2).includes('run') ? new QueuedSignals() : undefined;
