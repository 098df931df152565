// Decides WHEN file mode reloads, not how: watches the directories that hold the identity files (a
// Kubernetes Secret volume swaps a `..data` symlink, so the file inodes themselves never change) and
// calls back once a burst of events has settled. A reload always reads the latest files, so bursts may
// coalesce safely. Watch errors are logged, never thrown. Only events that can change what a reload reads
// count: another file in the same directory (a log, an editor's swap file) must not make every request
// pay for a reload.
import { basename, dirname, resolve } from 'node:path';
import { watch } from 'chokidar';
import type { Logger } from './log.js';

export interface WatchOptions {
  /** Quiet time after the last event before reloading. */
  debounceMs?: number;
  /** Reload at least this often while events keep coming. */
  maxWaitMs?: number;
}

export interface FileWatcher {
  close(): Promise<void>;
}

/**
 * Whether an event on `path` can change one of `names` (the watched files' base names): the file itself,
 * or a Kubernetes atomic-writer entry (`..data`, `..2026_12_03_…`), whose swap changes every file at once.
 */
export function relevantChange(names: ReadonlySet<string>, path: string): boolean {
  const name = basename(path);
  return names.has(name) || name.startsWith('..');
}

export async function watchIdentityFiles(
  files: readonly string[],
  onChange: () => void,
  log: Logger,
  { debounceMs = 50, maxWaitMs = 500 }: WatchOptions = {},
): Promise<FileWatcher> {
  const dirs = [...new Set(files.map((f) => dirname(resolve(f))))];
  const names = new Set(files.map((f) => basename(f)));
  const watcher = watch(dirs, { ignoreInitial: true, depth: 0, followSymlinks: false, persistent: false });
  let timer: NodeJS.Timeout | undefined;
  let firstEventAt = 0;
  const fire = () => {
    timer = undefined;
    firstEventAt = 0;
    onChange();
  };
  watcher.on('all', (_event, path) => {
    if (!relevantChange(names, path)) return;
    const now = Date.now();
    if (firstEventAt === 0) firstEventAt = now;
    clearTimeout(timer);
    timer = setTimeout(fire, now - firstEventAt >= maxWaitMs ? 0 : debounceMs);
  });
  watcher.on('error', (err) => log.warn({ event: 'watch_error', err }, 'file watch error'));
  await new Promise<void>((ready) => watcher.once('ready', () => ready()));
  return {
    async close() {
      clearTimeout(timer);
      await watcher.close();
    },
  };
}
