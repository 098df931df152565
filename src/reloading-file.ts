// A file named by a flag whose parsed content is swapped in when it changes (the policy, the API keys):
// read, parse and validate first, swap only on success. At startup a bad file is an error naming the
// flag; on reload it is logged and the last good content stays in force (never an empty policy).
import { isSidecarError } from './errors.js';
import { readFlagFile } from './flag-file.js';
import { type FileWatcher, watchIdentityFiles } from './file-watcher.js';
import type { Logger } from './log.js';

/** Parses the text; throws a SidecarError whose message starts with `label` (flag and file). */
export type FileParser<T> = (text: string, label: string) => T;

export class ReloadingFile<T> {
  private watcher: FileWatcher | undefined;
  private queue: Promise<void> = Promise.resolve();

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

  /** Re-reads the file; reloads run one at a time, so the last one to finish read the latest file. */
  reload(trigger: string): Promise<void> {
    this.queue = this.queue.then(() => this.reloadNow(trigger));
    return this.queue;
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

  private async reloadNow(trigger: string): Promise<void> {
    try {
      const text = await readFlagFile(this.flag, this.file);
      if (text === this.text) return;
      this.value = this.parse(text, `${this.flag} ${this.file}`);
      this.text = text;
      this.log.info({ event: 'file_reloaded', flag: this.flag, file: this.file, trigger }, `${this.flag} reloaded`);
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
    }
  }
}
