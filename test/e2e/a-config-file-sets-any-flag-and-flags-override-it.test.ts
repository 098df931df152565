// --config FILE: YAML keyed by flag names, validated against the flag table; flags and env override it.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestVia } from '../helpers/client.js';
import { runCli, startCli, waitForEvent } from '../helpers/process.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';

let s: Scenario;
beforeAll(async () => {
  s = await startScenario();
});
afterAll(() => s.close());

async function configFile(name: string, text: string): Promise<string> {
  const path = join(s.dir, name);
  await writeFile(path, text);
  return path;
}

describe('a config file sets any flag, and flags override it', () => {
  it('serves from a YAML file; a flag on the command line wins over the file', async () => {
    const file = await configFile(
      'sidecar.yaml',
      [
        'listen: 127.0.0.1:0',
        `upstream: ${s.app.url}`,
        `mtls-cert-file: ${s.files.certFile}`,
        `mtls-key-file: ${s.files.keyFile}`,
        `mtls-ca-file: ${s.files.caFile}`,
        'allow:',
        `  - ${ALLOWED_ID}`,
        '  - spiffe://example.org/ops/*',
        'identity-header: x-from-file',
        'xfcc: false',
        'max-connections: 100',
        'drain-timeout: 2s',
      ].join('\n'),
    );
    const cli = startCli(['--config', file, '--identity-header', 'x-from-flag']);
    try {
      const started = await waitForEvent(cli, 'started');
      const res = await requestVia((started.listen as { port: number }).port, s.allowed);
      expect(res.status).toBe(200);
      const headers = JSON.parse(res.body).headers;
      expect(headers['x-from-flag']).toBe(ALLOWED_ID);
      expect(headers['x-from-file']).toBeUndefined();
      expect(headers['x-forwarded-client-cert']).toBeUndefined();
    } finally {
      cli.child.kill('SIGTERM');
      expect((await cli.exited).code).toBe(0);
    }
  });

  it.each([
    ['unknown.yaml', 'upstrem: http://127.0.0.1:1\n', 'unknown key "upstrem"'],
    ['type.yaml', 'xfcc: "yes"\n', '"xfcc" must be true or false'],
    ['list.yaml', 'upstream: [a, b]\n', '"upstream" takes one value'],
    ['broken.yaml', 'allow: [\n', 'not valid YAML'],
    ['dup.yaml', 'listen: a\nlisten: b\n', 'not valid YAML'],
    ['scalar.yaml', '- just a list\n', 'expected a mapping'],
  ])('%s is refused: %s', async (name, text, fragment) => {
    const result = await runCli(['--config', await configFile(name, text)]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ERR_CONFIG_INVALID');
    expect(result.stderr).toContain(`--config ${join(s.dir, name)}`);
    expect(result.stderr).toContain(fragment);
  });

  it('a missing file is refused', async () => {
    const result = await runCli(['--config', '/nonexistent/sidecar.yaml']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--config /nonexistent/sidecar.yaml: cannot read the file (no such file)');
  });
});

describe('config file edge cases', () => {
  it.each([
    ['proto.yaml', 'constructor: x\n', 'unknown key "constructor"'],
    ['alias.yaml', 'upstream: &u http://127.0.0.1:1\nlisten: *u\n', 'not valid YAML'],
  ])('%s is refused: %s', async (name, text, fragment) => {
    const path = join(s.dir, name);
    await writeFile(path, text);
    const result = await runCli(['--config', path]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(fragment);
  });
});
