// Reading a file named by a flag (identity PEMs, policy, API keys): bounded and never blocking, with an
// error that names the flag and the file.
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { SidecarError } from './errors.js';

/** Such files are small; anything larger is a mistake or an attack on the event loop. */
export const MAX_FLAG_FILE_BYTES = 1024 * 1024;

/**
 * Reads one file: a regular file (a FIFO or device would block the read forever), at most
 * MAX_FLAG_FILE_BYTES. Opened non-blocking so that even opening a FIFO cannot hang.
 */
export async function readFlagFile(flag: string, file: string): Promise<string> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const stats = await handle.stat();
    if (!stats.isFile()) throw new Error('not a regular file');
    if (stats.size > MAX_FLAG_FILE_BYTES) throw new Error(`larger than ${MAX_FLAG_FILE_BYTES} bytes`);
    return await handle.readFile('utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new SidecarError('ERR_FILE_READ', `${flag} ${file}: cannot read the file (${why})`, { cause: err });
  } finally {
    await handle?.close();
  }
}
