// A file named by a flag whose parsed content is swapped in when it changes (the policy, the API keys):
// read, parse and validate first, swap only on success. At startup a bad file is an error naming the
// flag; on reload it is logged and the last good content stays in force (never an empty policy).
// Every reload logs its outcome (`file_reloaded`, `file_unchanged`, `reload_failed`) and is counted by
// outcome, for spiffe_sidecar_file_reloads_total (read at scrape time).
import { isSidecarError } from './errors.js';
import { readFlagFile } from './flag-file.js';
import { type FileWatcher, watchIdentityFiles } from './file-watcher.js';
import type { Logger } from './log.js';

/** Parses the text; throws a SidecarError whose message starts with `label` (flag and file). */
export type FileParser<T> = (text: string, label: string) => T;

/** What a reload did: swapped in new content, found the same bytes, or kept the last good content. */
export type ReloadOutcome = 'updated' | 'unchanged' | 'failed';

/** Reloads since start, by outcome. */
export type ReloadCounts = Record<ReloadOutcome, number>;

export const RELOAD_OUTCOMES: readonly ReloadOutcome[] = ['updated', 'unchanged', 'failed'];

/** The outcome of reloading several files as one (a flag given twice): a failure first, then a change. */
export function combinedOutcome(outcomes: readonly ReloadOutcome[]): ReloadOutcome {
  if (outcomes.includes('failed')) return 'failed';
  return outcomes.includes('updated') ? 'updated' : 'unchanged';
}

/** Triggers that fire on their own, often: a reload they cause that changes nothing is logged at debug. */
const AUTOMATIC_TRIGGERS: ReadonlySet<string> = new Set(['watch', 'interval', 'key_miss']);

/**
 * A reload read the same bytes as last time: `file_unchanged`, one line per file. At info when someone
 * asked (SIGHUP), at debug for the triggers that fire on their own (a watch event, --reload-interval).
 */
export function logFileUnchanged(log: Logger, trigger: string, flag: string, file: string): void {
  const fields = { event: 'file_unchanged', trigger, flag, file };
  if (AUTOMATIC_TRIGGERS.has(trigger)) log.debug(fields, `${flag} unchanged`);
  else log.info(fields, `${flag} unchanged`);
}

export class ReloadingFile<T> {
  private watcher: FileWatcher | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly counts: ReloadCounts = { updated: 0, unchanged: 0, failed: 0 };

  private constructor(
    readonly flag: string,
    readonly file: string,
    private readonly parse: FileParser<T>,
    private text: string,
    private value: T,
    private readonly log: Logger,
  ) {}

  static async open<T>(flag: string, file: string, parse: FileParser<T>, log: Logger): Promise<ReloadingFile<T>> {
    const text = await readFlagFile(flag, file);
    return new ReloadingFile(flag, file, parse, text, parse(text, `${flag} ${file}`), log);
  }

  current(): T {
    return this.value;
  }

  /** Reloads since start, by outcome (the metric). */
  stats(): ReloadCounts {
    return { ...this.counts };
  }

  /**
   * Re-reads the file; reloads run one at a time, so the last one to finish read the latest file.
   * Never rejects: resolves with what this reload did.
   */
  reload(trigger: string): Promise<ReloadOutcome> {
    const next = this.queue.then(() => this.reloadNow(trigger));
    this.queue = next;
    return next;
  }

  /** Reloads whenever the file's directory changes (a ConfigMap or Secret volume swaps a symlink). */
  async watch(): Promise<void> {
    this.watcher = await watchIdentityFiles([this.file], () => void this.reload('watch'), this.log);
    // A change between open() and the watcher being ready would otherwise wait for the next event.
    void this.reload('watch');
  }

  async close(): Promise<void> {
    await this.watcher?.close();
    await this.queue;
  }

  private async reloadNow(trigger: string): Promise<ReloadOutcome> {
    const outcome = await this.tryReload(trigger);
    this.counts[outcome]++;
    return outcome;
  }

  private async tryReload(trigger: string): Promise<ReloadOutcome> {
    try {
      const text = await readFlagFile(this.flag, this.file);
      if (text === this.text) {
        logFileUnchanged(this.log, trigger, this.flag, this.file);
        return 'unchanged';
      }
      this.value = this.parse(text, `${this.flag} ${this.file}`);
      this.text = text;
      this.log.info({ event: 'file_reloaded', flag: this.flag, file: this.file, trigger }, `${this.flag} reloaded`);
      return 'updated';
    } catch (err) {
      this.log.warn(
        {
          event: 'reload_failed',
          trigger,
          flag: this.flag,
          file: this.file,
          reason: isSidecarError(err) ? err.code : 'ERR_INTERNAL',
        },
        `${this.flag} reload failed, keeping the last good one: ${(err as Error).message}`,
      );
      return 'failed';
    }
  }
}
