import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../support/temp-dir.ts';
import { FORBIDDEN_NAMES, anchorsOf, checkFile, findLinks, formatProblems, slug } from '../support/doc-links.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** Every git-tracked Markdown file (absolute paths). */
function trackedMarkdown(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--', '*.md'], { cwd: ROOT, encoding: 'utf8' });
  return out
    .split('\0')
    .filter((f) => f !== '')
    .map((f) => join(ROOT, f));
}

describe('documentation links (issue 13: the repository links nothing outside itself)', () => {
  it('finds the Markdown files of the repository', () => {
    const files = trackedMarkdown();
    assert.ok(files.some((f) => f.endsWith('/README.md')), 'README.md is tracked');
    assert.ok(files.some((f) => f.endsWith('/docs/spec/README.md')), 'the spec index is tracked');
  });

  it('resolves every relative link and #anchor in every tracked .md file, and names no outside path', () => {
    const problems = trackedMarkdown().flatMap((f) => checkFile(ROOT, f));
    assert.equal(problems.length, 0, `dead or outside links:\n${formatProblems(problems)}`);
  });

  it('names the handover folder in no tracked file of any kind (source comments included)', () => {
    const files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter((f) => f !== '');
    const hits: string[] = [];
    for (const f of files) {
      let text: string;
      try {
        const b = readFileSync(join(ROOT, f));
        if (b.length > 4 << 20 || b.includes(0)) continue; // binary or huge: not prose
        text = b.toString('utf8');
      } catch {
        continue; // listed but absent (a deleted, uncommitted file)
      }
      text.split('\n').forEach((line, i) => {
        for (const name of FORBIDDEN_NAMES) if (line.includes(name)) hits.push(`${f}:${i + 1}: ${name}`);
      });
    }
    assert.deepEqual(hits, [], `files naming a path outside the repository:\n${hits.join('\n')}`);
  });

  it('fails on a planted dead link, a dead anchor, a link out of the tree and a named outside path', () => {
    const t = tempDir('idprov-links-');
    try {
      mkdirSync(join(t.dir, 'docs'));
      writeFileSync(join(t.dir, 'docs', 'ok.md'), '# Real heading\n\n## The `code` part (§2)\n');
      writeFileSync(
        join(t.dir, 'README.md'),
        [
          '# Top',
          'good: [ok](docs/ok.md), [anchor](docs/ok.md#real-heading), [code anchor](docs/ok.md#the-code-part-2), [self](#top)',
          'dead: [gone](docs/gone.md)',
          'dead anchor: [x](docs/ok.md#no-such-heading)',
          'outside: [up](../elsewhere.md)',
          `named: see ${FORBIDDEN_NAMES[0]}/FILE.md`,
          '```',
          '[in code](docs/also-gone.md)',
          '```',
          'external: [web](https://example.com/x.md)',
        ].join('\n'),
      );
      const problems = checkFile(t.dir, join(t.dir, 'README.md'));
      const targets = problems.map((p) => `${p.line} ${p.target}`);
      assert.deepEqual(targets.sort(), ['3 docs/gone.md', '4 docs/ok.md#no-such-heading', '5 ../elsewhere.md', `6 ${FORBIDDEN_NAMES[0]}`].sort());
    } finally {
      t.cleanup();
    }
  });

  it('reads inline, reference-style and HTML links, and skips code spans', () => {
    const md = 'a [x](a.md) `[y](b.md)` ![i](img.svg "t")\n[ref]: docs/r.md\n<img src="p.png">\n';
    assert.deepEqual(
      findLinks(md).map((l) => l.target),
      ['a.md', 'img.svg', 'docs/r.md', 'p.png'],
    );
  });

  it('makes GitHub heading anchors, numbering repeated headings', () => {
    assert.equal(slug('1. Transports and resources'), '1-transports-and-resources');
    assert.equal(slug('Request body (`/idprov/request`) — a CBOR map'), 'request-body-idprovrequest--a-cbor-map');
    assert.deepEqual([...anchorsOf('# A\n## A\n```\n# not a heading\n```\n<a id="x"></a>\n')], ['a', 'a-1', 'x']);
  });
});
