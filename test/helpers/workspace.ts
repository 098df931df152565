// The fixture most end-to-end files share: a temp directory and the echo app, made before the file's
// tests and removed after them. Read its fields inside tests and hooks (they are set by beforeAll).
import { afterAll, beforeAll } from 'vitest';
import { type EchoApp, startEchoApp } from './echo-app.js';
import { tempDir } from './pki.js';

export interface Workspace {
  /** The temp directory. */
  path: string;
  app: EchoApp;
}

export function useWorkspace(): Workspace {
  const ws = {} as Workspace;
  let remove: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const dir = await tempDir();
    remove = dir.remove;
    ws.path = dir.path;
    ws.app = await startEchoApp();
  });
  afterAll(async () => {
    await ws.app?.close();
    await remove?.();
  });
  return ws;
}
