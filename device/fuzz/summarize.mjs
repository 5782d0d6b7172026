#!/usr/bin/env node
/* One markdown row per libFuzzer log of long-run.sh: runs, time, exec/s, coverage, corpus, result. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
const [dir, ...targets] = process.argv.slice(2);
console.log('| decoder | runs | seconds | exec/s | coverage (edges) | features | corpus | result |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
for (const t of targets) {
  const log = readFileSync(join(dir, `${t}.log`), 'utf8');
  const stat = (k) => Number((new RegExp(`stat::${k}:\\s+(\\d+)`).exec(log) ?? [])[1] ?? NaN);
  const last = [...log.matchAll(/^#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)\//gm)].pop();
  const exit = (/^exit (\d+)/m.exec(log) ?? [])[1];
  const crash = /ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer)[^\n]*/.exec(log);
  const runs = stat('number_of_executed_units');
  const secs = stat('average_exec_per_sec') ? Math.round(runs / stat('average_exec_per_sec')) : NaN;
  console.log(`| ${t} | ${runs.toLocaleString('en')} | ${secs} | ${stat('average_exec_per_sec').toLocaleString('en')} | ${last?.[2]} | ${last?.[3]} | ${last?.[4]} | ${crash ? crash[0] : exit === '0' ? 'no crash, leak or UB' : `exit ${exit}`} |`);
}
