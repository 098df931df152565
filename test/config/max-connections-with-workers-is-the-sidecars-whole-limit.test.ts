// --max-connections bounds the sidecar, not each of its processes: with --workers N each worker takes its share,
// rounded up (a review: --workers 2 --max-connections 2 held 4 connections, and in TCP mode 4 app connections).
import { expect, it } from 'vitest';
import { buildConfig } from '../../src/config.js';
import { FILE_MODE } from '../helpers/config.js';

const limit = (workers: string, max: string) =>
  buildConfig({ ...FILE_MODE, 'allow-any': true, workers, 'max-connections': max }).limits.maxConnections;

it('each of N workers takes max-connections / N, rounded up; one process takes it all', () => {
  expect(limit('1', '10000')).toBe(10000);
  expect(limit('2', '2')).toBe(1);
  expect(limit('2', '5')).toBe(3);
  expect(limit('4', '10000')).toBe(2500);
  // Never 0: a worker always serves at least one connection.
  expect(limit('4', '1')).toBe(1);
});
