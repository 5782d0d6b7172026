/**
 * The human-readable form of a pino log line (`logFormat` pretty, or auto on a terminal):
 * `12:00:01.234 INFO  prov approved id=lab-sensor-01 outcome=approved code=2.01`, one line per entry
 * (an error's stack follows on its own lines). A few lines of our own instead of pino-pretty: no
 * worker thread, no dependency.
 */

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_COLOURS: Readonly<Record<number, string>> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '35' };
/** Fields shown elsewhere in the line, or noise for a person. */
const HIDDEN = new Set(['level', 'time', 'pid', 'hostname', 'svc', 'msg', 'c', 'v']);

const pad2 = (n: number): string => String(n).padStart(2, '0');

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/**
 * One pino JSON line as text for people. `colour` adds ANSI colours to the level. A line that is
 * not JSON is returned as it came.
 */
export function prettyLine(json: string, colour = false): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.replace(/\n$/, '');
  }
  const t = typeof o['time'] === 'number' ? new Date(o['time']) : undefined;
  const time = t ? `${pad2(t.getHours())}:${pad2(t.getMinutes())}:${pad2(t.getSeconds())}.${String(t.getMilliseconds()).padStart(3, '0')}` : '';
  const lv = Number(o['level']);
  const name = (LEVEL_NAMES[lv] ?? String(o['level'])).padEnd(5);
  const level = colour && LEVEL_COLOURS[lv] ? `\x1b[${LEVEL_COLOURS[lv]}m${name}\x1b[0m` : name;
  const parts = [time, level];
  if (typeof o['c'] === 'string') parts.push(o['c']);
  if (o['msg'] !== undefined) parts.push(String(o['msg']));
  let stack = '';
  for (const [k, v] of Object.entries(o)) {
    if (HIDDEN.has(k) || v === undefined) continue;
    if (k === 'err' && v && typeof v === 'object') {
      const e = v as { message?: string; stack?: string };
      parts.push(`err=${value(e.message ?? v)}`);
      if (lv >= 50 && e.stack) stack = `\n${e.stack}`;
      continue;
    }
    parts.push(`${k}=${value(v)}`);
  }
  return parts.filter((p) => p !== '').join(' ') + stack;
}
