// nginx as the mTLS reverse-proxy reference: found on PATH (or in /usr/sbin), else installed with apt-get
// (Debian's package; with sudo when not root). The bench says what it does and goes on without nginx if it
// cannot. One worker process, client certificates required, session tickets on (its default), keep-alive to
// the app, no access log.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import process from 'node:process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** @returns {Promise<string | undefined>} */
async function findNginx() {
  for (const candidate of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']) {
    if (existsSync(candidate)) return candidate;
  }
  try {
    const { stdout } = await run('sh', ['-c', 'command -v nginx']);
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The nginx binary, installing it with apt-get when missing; undefined (with the reason logged) if it
 * cannot be had.
 * @param {(line: string) => void} say
 * @returns {Promise<string | undefined>}
 */
export async function ensureNginx(say) {
  if (process.env.BENCH_NGINX === 'skip') {
    say('nginx: skipped (BENCH_NGINX=skip): its row and the ratios against it are left out');
    return undefined;
  }
  const found = await findNginx();
  if (found) return found;
  if (process.env.BENCH_NO_INSTALL === '1') {
    say('nginx: not installed and BENCH_NO_INSTALL=1: the nginx row is skipped');
    return undefined;
  }
  const root = process.getuid?.() === 0;
  const prefix = root ? [] : ['sudo', '-n'];
  const apt = async (/** @type {string[]} */ args) => {
    const [cmd, ...rest] = [...prefix, 'apt-get', ...args];
    await run(cmd, rest, {
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      maxBuffer: 64 * 1024 * 1024,
    });
  };
  say(`nginx: not found; installing the Debian package with ${root ? '' : 'sudo '}apt-get (once per machine)...`);
  try {
    try {
      await apt(['install', '-y', '--no-install-recommends', 'nginx']);
    } catch {
      say('nginx: apt-get install failed; running apt-get update and trying again...');
      await apt(['update']);
      await apt(['install', '-y', '--no-install-recommends', 'nginx']);
    }
  } catch (err) {
    const message = /** @type {Error} */ (err).message.split('\n')[0];
    say(`nginx: could not be installed (${message}): the nginx row is skipped`);
    return undefined;
  }
  const installed = await findNginx();
  say(installed ? `nginx: installed (${installed})` : 'nginx: installed but not found: the nginx row is skipped');
  return installed;
}

/** @param {string} binary */
export async function nginxVersion(binary) {
  const { stderr } = await run(binary, ['-v']);
  return stderr.trim().replace(/^nginx version: /, '');
}

/**
 * Writes the configuration into `dir` and returns the arguments to start nginx in the foreground.
 * @param {{ dir: string, port: number, appPort: number, certDir: string }} options
 */
export async function nginxConfig({ dir, port, appPort, certDir }) {
  const temp = join(dir, 'temp');
  await mkdir(temp, { recursive: true });
  const conf = `
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${temp}/body;
  proxy_temp_path ${temp}/proxy;
  fastcgi_temp_path ${temp}/fastcgi;
  uwsgi_temp_path ${temp}/uwsgi;
  scgi_temp_path ${temp}/scgi;
  upstream app {
    server 127.0.0.1:${appPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${join(certDir, 'tls.crt')};
    ssl_certificate_key ${join(certDir, 'tls.key')};
    ssl_client_certificate ${join(certDir, 'ca.crt')};
    ssl_verify_client on;
    ssl_verify_depth 4;
    ssl_protocols TLSv1.2 TLSv1.3;
    # nginx's defaults, like the sidecar's: tickets issued (a client that never resumes still pays for them).
    ssl_session_tickets on;
    ssl_session_timeout 5m;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Client-Verify $ssl_client_verify;
    }
  }
}
`;
  const file = join(dir, 'nginx.conf');
  await writeFile(file, conf);
  return ['-p', dir, '-c', file, '-g', 'daemon off; master_process on;'];
}
