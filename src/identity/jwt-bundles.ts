// JWT-SVID bundles (JWKS per trust domain) from files (`--jwt-bundle-file TD=FILE`, reloaded like the
// PEM files, a broken file keeps its last good bundle); the Workload API's stream is in
// workload-api-jwt-bundles.ts, so that JWT mode without SPIRE never loads gRPC. `current()` returns a new
// Map object on every change, so results cached against the old one are invalidated.
import { readFile } from 'node:fs/promises';
import { isSidecarError, SidecarError } from '../errors.js';
import type { Logger } from '../log.js';
import { logFileUnchanged, type ReloadCounts, type ReloadOutcome } from '../reloading-file.js';
import { ignoredJwtAuthorityKids, type JWKS } from '../spiffe/jwtsvid.js';
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

/** The flag that names the files: `--jwt-bundle-file TD=FILE`, or `--jwt-jwks NAME=FILE` (an issuer's keys). */
export type JwtKeyFileFlag = '--jwt-bundle-file' | '--jwt-jwks';

export class JwtBundleFiles implements JwtBundleSource {
  private bundles: ReadonlyMap<string, JWKS>;
  private texts: string[];
  private readonly counts: ReloadCounts = { updated: 0, unchanged: 0, failed: 0 };

  private constructor(
    readonly files: readonly JwtBundleFile[],
    texts: string[],
    bundles: ReadonlyMap<string, JWKS>,
    private readonly log: Logger,
    readonly flag: JwtKeyFileFlag,
  ) {
    this.texts = texts;
    this.bundles = bundles;
  }

  /** Loads every file; at startup any problem is an error naming the flag and the file. */
  static async open(
    files: readonly JwtBundleFile[],
    log: Logger,
    flag: JwtKeyFileFlag = '--jwt-bundle-file',
  ): Promise<JwtBundleFiles> {
    const texts = await Promise.all(files.map((f) => readBundle(f, flag)));
    const bundles = new Map(files.map((f, i) => [f.trustDomain, parseJwksText(texts[i], label(f, flag))]));
    for (const f of files) warnOfIgnoredEntries(log, f, flag, bundles.get(f.trustDomain)!);
    return new JwtBundleFiles(files, texts, bundles, log, flag);
  }

  current(): ReadonlyMap<string, JWKS> {
    return this.bundles;
  }

  /** File reloads since start, by outcome (each file of a reload counts once; the metric). */
  stats(): ReloadCounts {
    return { ...this.counts };
  }

  /**
   * Re-reads the files; a file that fails keeps its last good bundle (logged). Resolves with each file's
   * outcome, in `files` order; never rejects.
   */
  async reload(trigger: string): Promise<ReloadOutcome[]> {
    const next = new Map(this.bundles);
    const outcomes = await Promise.all(
      this.files.map(async (f, i): Promise<ReloadOutcome> => {
        try {
          const text = await readBundle(f, this.flag);
          if (text === this.texts[i]) {
            logFileUnchanged(this.log, trigger, this.flag, f.file);
            return 'unchanged';
          }
          const bundle = parseJwksText(text, label(f, this.flag));
          next.set(f.trustDomain, bundle);
          this.texts[i] = text;
          warnOfIgnoredEntries(this.log, f, this.flag, bundle);
          return 'updated';
        } catch (err) {
          this.log.warn(
            {
              event: 'reload_failed',
              trigger,
              reason: isSidecarError(err) ? err.code : 'ERR_FILE_READ',
              flag: this.flag,
              file: f.file,
            },
            `JWT bundle reload failed, keeping the last good one: ${(err as Error).message}`,
          );
          return 'failed';
        }
      }),
    );
    for (const outcome of outcomes) this.counts[outcome]++;
    if (!outcomes.includes('updated')) return outcomes;
    this.bundles = next;
    this.log.info({ event: 'jwt_bundles_updated', trigger, trust_domains: [...next.keys()] }, 'JWT bundles updated');
    return outcomes;
  }

  async close(): Promise<void> {}
}

/**
 * A SPIFFE bundle file whose entries lack `use: "jwt-svid"` loads (Trust Domain and Bundle §4.2.2: they are
 * ignored, not an error), but every token signed by them is refused: say so when the file is read, not only in
 * each refusal. `--jwt-jwks` files are an issuer's JWKS, where entries need no use.
 */
function warnOfIgnoredEntries(log: Logger, f: JwtBundleFile, flag: JwtKeyFileFlag, bundle: JWKS): void {
  if (flag !== '--jwt-bundle-file') return;
  const kids = ignoredJwtAuthorityKids(bundle);
  if (kids.length === 0) return;
  log.warn(
    { event: 'jwt_bundle_entries_ignored', flag, file: f.file, trust_domain: f.trustDomain, kids: kids.slice(0, 10) },
    `${label(f, flag)}: ${kids.length} key entries are ignored: the file is a SPIFFE bundle, whose JWT-SVID keys must say "use": "jwt-svid" (Trust Domain and Bundle §4.2.2); tokens signed by them are refused`,
  );
}

function label(f: JwtBundleFile, flag: JwtKeyFileFlag): string {
  return `${flag} ${f.trustDomain}=${f.file}`;
}

async function readBundle(f: JwtBundleFile, flag: JwtKeyFileFlag): Promise<string> {
  try {
    return await readFile(f.file, 'utf8');
  } catch (err) {
    throw new SidecarError(
      'ERR_FILE_READ',
      `${label(f, flag)}: cannot read the file (${(err as NodeJS.ErrnoException).code})`,
      {
        cause: err,
      },
    );
  }
}
