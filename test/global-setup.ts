// Builds dist/ once before the suite (npm run build): some tests run the real `spiffe-sidecar` process.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
}
