import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FuzzTarget } from './targets';

/** test/fuzz/corpus/<target>/ in the source tree (the tests run from dist/test/fuzz). */
export function corpusDir(target: string): string {
  return path.resolve(__dirname, '..', '..', '..', 'test', 'fuzz', 'corpus', target);
}

/** Every saved input of a target, by file name. */
export function corpusInputs(target: FuzzTarget<never>): { file: string; input: never }[] {
  const dir = corpusDir(target.name);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .sort()
    .map((file) => ({ file, input: target.load(fs.readFileSync(path.join(dir, file))) }));
}

/** Saves a failing input under a name derived from its content; returns the file's path. */
export function saveInput(target: FuzzTarget<never>, input: never): string {
  const dir = corpusDir(target.name);
  fs.mkdirSync(dir, { recursive: true });
  const bytes = target.save(input);
  const file = path.join(dir, `${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.input`);
  fs.writeFileSync(file, bytes);
  return file;
}
