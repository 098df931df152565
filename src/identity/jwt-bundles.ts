// JWT-SVID bundles (JWKS per trust domain) from files (`--jwt-bundle-file TD=FILE`, reloaded like the
// PEM files, a broken file keeps its last good bundle); the Workload API's stream is in
// workload-api-jwt-bundles.ts, so that JWT mode without SPIRE never loads gRPC. `current()` returns a new
// Map object on every change, so results cached against the old one are invalidated.
import { readFile } from 'node:fs/promises';
import { isSidecarError, SidecarError } from '../errors.js';
import type { Logger } from '../log.js';
import type { JWKS } from '../spiffe/jwtsvid.js';
import { parseJwksText } from './jwks.js';

export interface JwtBundleSource {
  /** Bundles by trust domain name; undefined until the first set arrived. */
  current(): ReadonlyMap<string, JWKS> | undefined;
  close(): Promise<void>;
}

export interface JwtBundleFile {
  trustDomain: string;
  file: string;
}

export class JwtBundleFiles implements JwtBundleSource {
  private bundles: ReadonlyMap<string, JWKS>;
  private texts: string[];

  private constructor(
    readonly files: readonly JwtBundleFile[],
    texts: string[],
    bundles: ReadonlyMap<string, JWKS>,
    private readonly log: Logger,
  ) {
    this.texts = texts;
    this.bundles = bundles;
  }

  /** Loads every file; at startup any problem is an error naming the flag and the file. */
  static async open(files: readonly JwtBundleFile[], log: Logger): Promise<JwtBundleFiles> {
    const texts = await Promise.all(files.map((f) => readBundle(f)));
    const bundles = new Map(files.map((f, i) => [f.trustDomain, parseJwksText(texts[i], label(f))]));
    return new JwtBundleFiles(files, texts, bundles, log);
  }

  current(): ReadonlyMap<string, JWKS> {
    return this.bundles;
  }

  /** Re-reads the files; a file that fails keeps its last good bundle (logged). */
  async reload(trigger: string): Promise<void> {
    const next = new Map(this.bundles);
    let changed = false;
    await Promise.all(
      this.files.map(async (f, i) => {
        try {
          const text = await readBundle(f);
          if (text === this.texts[i]) return;
          next.set(f.trustDomain, parseJwksText(text, label(f)));
          this.texts[i] = text;
          changed = true;
        } catch (err) {
          this.log.warn(
            { event: 'reload_failed', trigger, reason: isSidecarError(err) ? err.code : 'ERR_FILE_READ', file: f.file },
            `JWT bundle reload failed, keeping the last good one: ${(err as Error).message}`,
          );
        }
      }),
    );
    if (!changed) return;
    this.bundles = next;
    this.log.info({ event: 'jwt_bundles_updated', trigger, trust_domains: [...next.keys()] }, 'JWT bundles updated');
  }

  async close(): Promise<void> {}
}

function label(f: JwtBundleFile): string {
  return `--jwt-bundle-file ${f.trustDomain}=${f.file}`;
}

async function readBundle(f: JwtBundleFile): Promise<string> {
  try {
    return await readFile(f.file, 'utf8');
  } catch (err) {
    throw new SidecarError(
      'ERR_FILE_READ',
      `${label(f)}: cannot read the file (${(err as NodeJS.ErrnoException).code})`,
      {
        cause: err,
      },
    );
  }
}
