import * as fs from 'node:fs';
import * as YAML from 'yaml';
import { ConfigIssues, isRecord } from './reader';

/** Parses YAML text and expands `${env:VAR}` / `${env:VAR:-default}`; problems go to `issues`. */
export function parseConfigText(text: string, source: string, issues: ConfigIssues, env: NodeJS.ProcessEnv = process.env): unknown {
  let doc: unknown;
  try {
    const parsed = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (parsed.errors.length > 0) {
      for (const error of parsed.errors) issues.report(source, `invalid YAML: ${error.message}`);
      return undefined;
    }
    doc = parsed.toJS();
  } catch (err) {
    issues.report(source, `invalid YAML: ${(err as Error).message}`);
    return undefined;
  }
  if (doc === null || doc === undefined) return {};
  if (!isRecord(doc)) {
    issues.report(source, 'the top level must be a mapping (receivers, processors, exporters, service, ...)');
    return undefined;
  }
  return expandEnv(doc, '', issues, env);
}

export function readConfigFile(file: string, issues: ConfigIssues): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    issues.report(file, `cannot read the config file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return undefined;
  }
  return parseConfigText(text, file, issues);
}

const REFERENCE = /\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE_REFERENCE = /^\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$/;

function expandEnv(value: unknown, path: string, issues: ConfigIssues, env: NodeJS.ProcessEnv): unknown {
  if (typeof value === 'string') return expandString(value, path, issues, env);
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, `${path}[${i}]`, issues, env));
  if (isRecord(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) out[key] = expandEnv(v, path ? `${path}::${key}` : key, issues, env);
    return out;
  }
  return value;
}

function lookup(name: string, fallback: string | undefined, path: string, issues: ConfigIssues, env: NodeJS.ProcessEnv): string {
  const value = env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return fallback;
  issues.report(path, `environment variable ${name} is not set (write \${env:${name}:-default} to give a default)`);
  return '';
}

function expandString(text: string, path: string, issues: ConfigIssues, env: NodeJS.ProcessEnv): unknown {
  const whole = WHOLE_REFERENCE.exec(text);
  if (whole) {
    // A value that is only a reference takes the type its text has in YAML (ports become numbers).
    // Text stays exactly as set: YAML would cut "abc #1" to "abc" and unquote '"x"'.
    const expanded = lookup(whole[1]!, whole[2], path, issues, env);
    try {
      const typed: unknown = YAML.parse(expanded);
      return typeof typed === 'number' || typeof typed === 'boolean' ? typed : expanded;
    } catch {
      return expanded;
    }
  }
  return text.replace(REFERENCE, (match, name: string | undefined, fallback: string | undefined) =>
    match === '$$' ? '$' : lookup(name!, fallback, path, issues, env),
  );
}
