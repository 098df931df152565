// `npm run demo`: a dev trust domain in a temp dir, a demo app, the real sidecar process in front of it,
// and three callers: allowed, denied, and one without a certificate. Exits 0 when all behave as expected.
// `npm run demo -- --mode jwt|outbound|tcp`: the same for JWT mode, two services on one host, and TCP
// mode; `--mode mtls` is the default. Each mode is in src/dev/demo-*.ts, over the same DemoRun.
const MODES = ['mtls', 'jwt', 'outbound', 'tcp'] as const;
const USAGE = `usage: npm run demo [-- --mode ${MODES.join('|')}] (default mtls)`;

/** `--mode M` or `--mode=M`; anything else is a usage error. */
function modeOf(args: string[]): (typeof MODES)[number] {
  let mode: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--mode' && i + 1 < args.length && mode === undefined) mode = args[++i];
    else if (arg.startsWith('--mode=') && mode === undefined) mode = arg.slice('--mode='.length);
    else throw new Error(`unexpected argument ${JSON.stringify(arg)}; ${USAGE}`);
  }
  if (mode === undefined) return 'mtls';
  if (!(MODES as readonly string[]).includes(mode)) throw new Error(`--mode ${JSON.stringify(mode)}: ${USAGE}`);
  return mode as (typeof MODES)[number];
}

async function main(): Promise<boolean> {
  const mode = modeOf(process.argv.slice(2));
  const run = new (await import('./dev/demo-kit.js')).DemoRun();
  try {
    if (mode === 'mtls') return await (await import('./dev/demo-mtls.js')).mtlsDemo(run);
    if (mode === 'jwt') return await (await import('./dev/demo-jwt.js')).jwtDemo(run);
    if (mode === 'outbound') return await (await import('./dev/demo-outbound.js')).outboundDemo(run);
    return await (await import('./dev/demo-tcp.js')).tcpDemo(run);
  } finally {
    await run.close();
  }
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
