/**
 * Security headers of the sidecar (security review F12): the page's CSP allows its own script and
 * style files only and no framing; every response (page, assets, API, errors, 304, event streams)
 * carries X-Frame-Options, X-Content-Type-Options and Referrer-Policy. The page working under that
 * CSP, and refusing a foreign frame, is checked in Chromium (test/admin/browser.test.ts).
 */
import assert from 'node:assert/strict';
import { call, startAdminServer, type AdminFixture, type Answer } from '../support/admin-server.ts';

function assertSecurityHeaders(a: { headers: Headers }, what: string): void {
  assert.equal(a.headers.get('x-frame-options'), 'DENY', `${what}: X-Frame-Options`);
  assert.equal(a.headers.get('x-content-type-options'), 'nosniff', `${what}: X-Content-Type-Options`);
  assert.equal(a.headers.get('referrer-policy'), 'no-referrer', `${what}: Referrer-Policy`);
  assert.match(a.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, `${what}: CSP frame-ancestors`);
}

describe('sidecar security headers (F12)', () => {
  let f: AdminFixture;
  before(async () => {
    f = await startAdminServer('hdr');
  });
  after(async () => f?.close());

  it('serves the page with a CSP that allows no inline script or style and no framing, and the page has none inline', async () => {
    const page = await call(f.base, 'GET', '/');
    assert.equal(page.status, 200);
    const csp = page.headers.get('content-security-policy') ?? '';
    const directives = new Map(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k!, v]));
    assert.deepEqual(directives.get('script-src'), ["'self'"]);
    assert.deepEqual(directives.get('style-src'), ["'self'"]);
    assert.deepEqual(directives.get('frame-ancestors'), ["'none'"]);
    assert.deepEqual(directives.get('base-uri'), ["'none'"]);
    assert.ok(!csp.includes('unsafe-inline') && !csp.includes('unsafe-eval'), csp);
    assert.doesNotMatch(page.text, /<script>|<script(?![^>]*\ssrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=/i, 'no inline script, style or event handler');
    for (const [path, type] of [
      ['/page.js', 'text/javascript'],
      ['/page.css', 'text/css'],
    ]) {
      const a = await call(f.base, 'GET', path!);
      assert.equal(a.status, 200, path);
      assert.equal(a.headers.get('content-type')?.split(';')[0], type, path);
      assertSecurityHeaders(a, path!);
    }
  });

  it('sends X-Frame-Options, X-Content-Type-Options, Referrer-Policy and a CSP on every kind of response', async () => {
    const answers: [string, Answer][] = [
      ['page', await call(f.base, 'GET', '/')],
      ['health', await call(f.base, 'GET', '/api/v1/health')],
      ['401', await call(f.base, 'GET', '/api/v1/devices')],
      ['404', await call(f.base, 'GET', '/nothing-here')],
      ['400 from the router', await call(f.base, 'GET', '/api/v1/devices/%E0%A4%A')],
      ['204', await call(f.base, 'DELETE', '/api/v1/allowlist/none-such', { token: f.adminToken })],
    ];
    const first = await call(f.base, 'GET', '/api/v1/devices', { token: f.adminToken });
    answers.push(['200 list', first]);
    answers.push(['304', await call(f.base, 'GET', '/api/v1/devices', { token: f.adminToken, headers: { 'if-none-match': first.headers.get('etag')! } })]);
    assert.equal(answers.at(-1)![1].status, 304);
    for (const [what, a] of answers) assertSecurityHeaders(a, `${what} (${a.status})`);
    const sse = await fetch(`${f.base}/api/v1/events/stream`, { headers: { authorization: `Bearer ${f.adminToken}` } });
    try {
      assert.equal(sse.status, 200);
      assertSecurityHeaders(sse, 'event stream');
    } finally {
      await sse.body?.cancel();
    }
  });
});
