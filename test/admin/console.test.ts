/**
 * The admin console (docs/console.md) in headless Chromium (Debian `chromium`, driven by playwright-core)
 * against the real server, at 1280 px and at 390 px (a phone): approve after confirming the fingerprint,
 * reject with a reason, revoke with a reason, add one allowlist entry, import a file with progress, page
 * past 50 rows, search, see an event arrive live, clear a flag, the instances, an unreachable server and a
 * refused token, the keyboard. Every view is screenshotted to test-artifacts/console/ (not committed),
 * and a test fails when a control of the view lies outside the window or is clipped by a scrolling box.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ERROR_TABLE } from '../../src/errors.ts';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { call, makeTokens, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = new URL('../../test-artifacts/console/', import.meta.url).pathname;
const VIEWS = ['pending', 'devices', 'allowlist', 'rejected', 'flags', 'events', 'instances', 'tokens'] as const;
type View = (typeof VIEWS)[number];

/**
 * The visible controls (buttons, inputs, selects, links) that lie outside the window horizontally or are
 * clipped by a box that scrolls or hides its overflow, and how far the document overflows sideways.
 */
async function outOfView(page: Page): Promise<{ offenders: string[]; overflow: number }> {
  return page.evaluate(`(() => {
    const offenders = [];
    const W = document.documentElement.clientWidth;
    for (const c of document.querySelectorAll('button, input, select, textarea, a[href], summary')) {
      const r = c.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (c.closest('[hidden]') || getComputedStyle(c).visibility === 'hidden') continue;
      const name = c.tagName.toLowerCase() + (c.id ? '#' + c.id : '') + (c.className ? '.' + String(c.className).split(' ').join('.') : '') + ' "' + (c.textContent || c.getAttribute('aria-label') || '').trim().slice(0, 30) + '"';
      if (r.left < -0.5 || r.right > W + 0.5) { offenders.push(name + ' at ' + Math.round(r.left) + '..' + Math.round(r.right) + ' of ' + W); continue; }
      for (let a = c.parentElement; a && a !== document.body; a = a.parentElement) {
        const ox = getComputedStyle(a).overflowX;
        if (ox === 'visible') continue;
        const ar = a.getBoundingClientRect();
        if (r.left < ar.left - 0.5 || r.right > ar.right + 0.5) { offenders.push(name + ' clipped by ' + a.tagName.toLowerCase() + '.' + a.className); break; }
      }
    }
    return { offenders, overflow: document.documentElement.scrollWidth - W };
  })()`);
}

describe('admin console in headless Chromium (1280 px and 390 px)', function () {
  let f: AdminFixture;
  let browser: Browser;
  let expiredToken: string;
  const problems: string[] = [];

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install the Debian package chromium (npm run test:setup does)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    f = await startAdminServer('con');
    expiredToken = (await makeTokens(f.server)).expired;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  after(async () => {
    await browser?.close();
    await f?.close();
  });

  for (const width of [1280, 390]) {
    describe(`at ${width} px`, () => {
      let page: Page;
      const tag = `w${width}`;

      before(async () => {
        page = await browser.newPage({ viewport: { width, height: width > 800 ? 900 : 844 } });
        // Shorter than the test's timeout, so a failing wait names what it waited for.
        page.setDefaultTimeout(10_000);
        page.on('pageerror', (e) => problems.push(`${width} px: page error: ${e.message}`));
        page.on('console', (m) => {
          // The routed-away requests of the "unreachable" test log failed loads; anything else is a fault.
          if (m.type() === 'error' && !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(m.text())) problems.push(`${width} px: console: ${m.text()}`);
        });
        page.on('request', (r) => {
          if (r.url().includes(f.adminToken) || r.url().includes(encodeURIComponent(f.adminToken))) problems.push(`${width} px: the token is in a URL: ${r.url()}`);
        });
        await page.goto(`${f.base}/`);
        await page.locator('#message', { hasText: 'Paste an admin token' }).waitFor();
        await page.fill('#token', f.adminToken);
        await page.click('#save-token');
        await page.locator('#live', { hasText: 'live' }).waitFor();
      });
      after(async () => {
        await page?.close();
      });

      const view = async (name: View) => {
        await page.click(`#tab-${name}`);
        await page.locator(`#view-${name}`).waitFor();
      };
      /** Search a list and wait for the rows that answer it (the table says which query it shows). */
      const search = async (name: View, q: string) => {
        await page.fill(`#search-${name}`, q);
        await page.press(`#search-${name}`, 'Enter');
        await page.locator(`#${name}[data-q=${JSON.stringify(q)}][data-page="0"]`).waitFor({ state: 'attached' });
      };
      const row = (table: View, id: string) => page.locator(`#${table} tr[data-id="${id}"]`);
      const assertInView = async (what: string) => {
        const r = await outOfView(page);
        assert.deepEqual(r.offenders, [], `${what} at ${width} px: controls out of view`);
        assert.ok(r.overflow <= 0, `${what} at ${width} px: the page is ${r.overflow}px wider than the window`);
      };
      const shot = (name: string) => page.screenshot({ path: `${ARTIFACTS}${name}-${width}.png`, fullPage: true });

      it('approves a pending device only after the fingerprint is confirmed, and the device gets its token', async () => {
        const c = await f.pendingDevice();
        await view('pending');
        await search('pending', c.id);
        await row('pending', c.id).waitFor();
        assert.equal(await page.locator('#pending tbody tr').count(), 1, 'the search finds one row');
        assert.equal(await row('pending', c.id).locator('td').nth(1).innerText(), c.fingerprint);
        await row('pending', c.id).locator('button.approve').click();
        await page.locator('#dialog').waitFor();
        assert.equal(await page.locator('#dlg-fp').innerText(), c.fingerprint);
        await assertInView('the approval dialog');
        await shot('approve-dialog');
        // Not confirmed: the dialog stays open with a reason, and nothing is approved.
        await page.click('#dialog-ok');
        await page.locator('#dialog-error', { hasText: 'Compare the fingerprint' }).waitFor();
        assert.equal((await c.provision()).status, 'pending');
        // Another key's fingerprint typed from a label: refused in the page.
        await page.fill('#dlg-typed', f.device().fingerprint);
        await page.click('#dialog-ok');
        await page.locator('#dialog-error', { hasText: 'do not approve' }).waitFor();
        if (width > 800) {
          await page.fill('#dlg-typed', '');
          await page.check('#dlg-match');
        } else {
          // As read off a label: lower case, spaces, o for 0.
          await page.fill('#dlg-typed', c.fingerprint.toLowerCase().replace(/-/g, ' ').replace(/0/g, 'o'));
        }
        await page.click('#dialog-ok');
        await page.locator('#dialog').waitFor({ state: 'hidden' });
        await page.locator('#message', { hasText: `Approved ${c.id}` }).waitFor();
        await row('pending', c.id).waitFor({ state: 'detached' });
        const r = await c.provision();
        assert.equal(r.status, 'approved', JSON.stringify(r));
      });

      it('rejects with a reason (required), lists the ID under Rejected, and re-admits it', async () => {
        const c = await f.pendingDevice();
        await view('pending');
        await search('pending', c.id);
        await row('pending', c.id).locator('button.reject').click();
        await page.click('#dialog-ok');
        await page.locator('#dialog-error', { hasText: 'Give a reason' }).waitFor();
        await page.fill('#dlg-reason', `not ours (${tag})`);
        await page.click('#dialog-ok');
        await page.locator('#message', { hasText: `Rejected ${c.id}` }).waitFor();
        // The outcome stays in sight however far down the admin acted: a page of several waiting
        // devices (on a phone, a screen or more of cards), scrolled to its end.
        for (let i = 0; i < 3; i++) await f.pendingDevice();
        await search('pending', '');
        await page.evaluate('window.scrollTo(0, document.documentElement.scrollHeight)');
        const seen = (await page.evaluate(`(() => { const r = document.getElementById('message').getBoundingClientRect(); return { top: r.top, bottom: r.bottom, h: window.innerHeight, scrolled: window.scrollY }; })()`)) as { top: number; bottom: number; h: number; scrolled: number };
        assert.ok(seen.top >= 0 && seen.bottom <= seen.h, `the message is in view after scrolling ${seen.scrolled}px: ${JSON.stringify(seen)}`);
        const r = await c.provision();
        assert.deepEqual([r.status, r.err], ['refused', ERROR_TABLE.rejected.err]);
        const events = (await call(f.base, 'GET', '/api/v1/events?limit=1000', { token: f.adminToken })).json.events as Array<{ kind: string; deviceId?: string; detail?: { reason?: string } }>;
        assert.ok(events.some((e) => e.kind === 'admin.reject' && e.deviceId === c.id && e.detail?.reason === `not ours (${tag})`), 'the reason is in the event log');
        await view('rejected');
        await search('rejected', c.id);
        await row('rejected', c.id).waitFor();
        assert.ok((await row('rejected', c.id).innerText()).includes(`not ours (${tag})`), 'the Rejected view says why');
        await shot('rejected');
        await assertInView('the rejected view');
        await row('rejected', c.id).locator('button.unreject').click();
        await row('rejected', c.id).waitFor({ state: 'detached' });
        assert.equal((await c.provision()).status, 'pending');
      });

      it('revokes a device with a reason, shown in its state, and its refresh is refused', async () => {
        const c = await f.provisionedDevice();
        await view('devices');
        await search('devices', c.id);
        await row('devices', c.id).locator('button.revoke').click();
        await page.fill('#dlg-reason', 'lost in the field');
        await page.click('#dialog-ok');
        await row('devices', c.id).locator('td', { hasText: 'revoked by admin:admin (lost in the field)' }).waitFor();
        const r = await c.refresh();
        assert.deepEqual([r.status, r.err], ['refused', ERROR_TABLE.revoked.err]);
        await shot('devices');
        await assertInView('the devices view');
        await row('devices', c.id).locator('button.enable').click();
        await row('devices', c.id).locator('td', { hasText: 'active' }).waitFor();
      });

      it('adds one allowlist entry by key, and the device is provisioned at its first request', async () => {
        const d = f.device();
        await view('allowlist');
        await page.fill('#allow-id', d.id);
        await page.selectOption('#allow-how', 'pk');
        await page.fill('#allow-value', d.publicKey.toString('hex'));
        await page.click('#allow-add');
        await page.locator('#message', { hasText: `Added ${d.id} to the allowlist (key ${d.fingerprint})` }).waitFor();
        assert.equal((await call(f.base, 'GET', `/api/v1/allowlist/${d.id}`, { token: f.adminToken })).json.fingerprint, d.fingerprint);
        const r = await d.provision();
        assert.equal(r.status, 'approved', JSON.stringify(r));
        // A key that is not 64 hex digits is refused before anything is sent.
        await page.fill('#allow-id', `${d.id}-b`);
        await page.fill('#allow-value', 'abc');
        await page.click('#allow-add');
        await page.locator('#message.error', { hasText: '64 hex digits' }).waitFor();
        assert.equal((await call(f.base, 'GET', `/api/v1/allowlist/${d.id}-b`, { token: f.adminToken })).status, 404);
      });

      it('imports a CSV file with progress, reports the invalid rows of a bad one, pages past 50 rows and searches', async () => {
        const prefix = `imp-${tag}-`;
        const rows = Array.from({ length: 60 }, (_, i) => `${prefix}${String(i).padStart(2, '0')},${randomBytes(32).toString('hex')},,,device,`);
        await view('allowlist');
        await page.setInputFiles('#import-file', { name: 'fleet.csv', mimeType: 'text/csv', buffer: Buffer.from(`id,pk,mac,secret,type,expires\n${rows.join('\n')}\n`) });
        await page.click('#import-start');
        await page.locator('#import-status', { hasText: 'fleet.csv: 60 rows — 60 added, 0 updated, 0 invalid.' }).waitFor();
        assert.equal(await page.locator('#import-progress').getAttribute('value'), '100');
        // All or nothing: one bad row, nothing imported, the line named.
        await page.setInputFiles('#import-file', { name: 'bad.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify([{ id: `${prefix}ok`, pk: randomBytes(32).toString('hex') }, { id: `${prefix}bad`, pk: 'zz' }])) });
        await page.click('#import-start');
        await page.locator('#import-status', { hasText: 'nothing imported' }).waitFor();
        assert.equal(await page.locator('#import-errors li').count(), 1);
        assert.equal((await call(f.base, 'GET', `/api/v1/allowlist/${prefix}ok`, { token: f.adminToken })).status, 404);

        await search('allowlist', prefix);
        await row('allowlist', `${prefix}00`).waitFor();
        assert.equal(await page.locator('#allowlist tbody tr').count(), 50);
        assert.match(await page.locator('[data-list="allowlist"] .range').innerText(), /^rows 1–50, more/);
        await shot('allowlist');
        await assertInView('the allowlist view');
        await page.click('[data-list="allowlist"] button.next');
        await row('allowlist', `${prefix}59`).waitFor();
        assert.equal(await page.locator('#allowlist tbody tr').count(), 10);
        assert.equal(await page.locator('[data-list="allowlist"] .range').innerText(), 'rows 51–60');
        assert.ok(await page.locator('[data-list="allowlist"] button.next').isDisabled());
        await page.click('[data-list="allowlist"] button.prev');
        await row('allowlist', `${prefix}00`).waitFor();
        // Search narrows to what matches; delete one entry with its button.
        await search('allowlist', `${prefix}42`);
        await row('allowlist', `${prefix}42`).waitFor();
        assert.equal(await page.locator('#allowlist tbody tr').count(), 1);
        await row('allowlist', `${prefix}42`).locator('button.delete').click();
        await page.click('#dialog-ok');
        await page.locator('#allowlist tr.empty').waitFor();
        assert.equal((await call(f.base, 'GET', `/api/v1/allowlist/${prefix}42`, { token: f.adminToken })).status, 404);
      });

      it('shows an event in the log as it happens (server-sent events), without a reload', async () => {
        await view('events');
        await page.locator('#events tbody tr').first().waitFor();
        const c = await f.pendingDevice();
        const ev = page.locator('#events tr[data-id]', { has: page.locator('td', { hasText: c.id }) });
        await ev.waitFor();
        assert.match(await ev.innerText(), /provision\.pending/);
        await search('events', 'provision.pending');
        await ev.waitFor();
        await shot('events');
        await assertInView('the event log');
        await search('events', '');
      });

      it('shows a flag with the keys of its evidence as fingerprints, and clears it with a note', async () => {
        const other = f.device();
        const c = f.device();
        await f.allow({ id: c.id, pk: other.publicKey });
        const r = await c.provision();
        assert.equal(r.err, ERROR_TABLE['key-mismatch'].err, JSON.stringify(r));
        await view('flags');
        await search('flags', c.id);
        const fr = page.locator('#flags tbody tr[data-id]', { has: page.locator('td', { hasText: c.id }) });
        await fr.waitFor();
        const text = await fr.innerText();
        assert.ok(text.includes(keyFingerprint(other.publicKey)) && text.includes(c.fingerprint), text);
        assert.doesNotMatch(text, /[0-9a-f]{64}/, 'no key in hex');
        await shot('flags');
        await assertInView('the flags view');
        await fr.locator('button.clear').click();
        await page.fill('#dlg-note', 'test key');
        await page.click('#dialog-ok');
        await page.locator('#message', { hasText: 'Cleared the key-mismatch flag' }).waitFor();
        await fr.waitFor({ state: 'detached' });
      });

      it('shows the instances (one, SQLite) and the pending view, each in the window', async () => {
        await view('instances');
        await page.locator('#instances tr.empty', { hasText: 'One instance' }).waitFor();
        await shot('instances');
        await assertInView('the instances view');
        await f.pendingDevice({ mac: '24:0a:c4:12:34:56' });
        await view('pending');
        await search('pending', '');
        await page.locator('#pending tbody tr button.approve').first().waitFor();
        await shot('pending');
        await assertInView('the pending view');
      });

      it('lists the tokens and revokes one with a reason, refused from its next request', async () => {
        const name = `ops-${tag}`;
        const t = await f.server.auth.mint({ name, role: 'hub', ttlS: 3600 }, Math.floor(Date.now() / 1000));
        assert.equal((await call(f.base, 'GET', '/api/v1/devices?limit=1', { token: t })).status, 200);
        await view('tokens');
        await search('tokens', name);
        const tr = page.locator('#tokens tbody tr[data-id]', { has: page.locator('td', { hasText: name }) });
        await tr.waitFor();
        assert.equal(await page.locator('#tokens tbody tr[data-id]').count(), 1, 'the search finds one token');
        assert.match(await tr.innerText(), /hub\s+valid/);
        await page.locator('#tokens tbody tr', { hasText: name }).locator('button.revoke-token').click();
        await page.fill('#dlg-reason', 'rotated');
        await page.click('#dialog-ok');
        await page.locator('#tokens tbody tr td', { hasText: `revoked by admin:admin (rotated)` }).waitFor();
        assert.equal((await call(f.base, 'GET', '/api/v1/devices?limit=1', { token: t })).status, 401);
        await search('tokens', '');
        await shot('tokens');
        await assertInView('the tokens view');
      });

      it('says so when the server is unreachable, and recovers', async () => {
        await page.route('**/api/v1/**', (r) => r.abort('connectionrefused'));
        await view('devices');
        await page.locator('#message.error', { hasText: 'Cannot reach the idprov server' }).waitFor();
        await page.unroute('**/api/v1/**');
        await view('pending');
        await page.locator('#message', { hasText: 'Connected to the server again' }).waitFor();
      });

      it('asks for a token again when the server refuses it (expired), keeping it out of the URL', async () => {
        await page.evaluate(`sessionStorage.setItem('idprov-token', ${JSON.stringify(expiredToken)})`);
        await page.reload();
        await page.locator('#message.error', { hasText: 'refused the admin token' }).waitFor();
        assert.equal(await page.evaluate('document.activeElement && document.activeElement.id'), 'token');
        assert.equal(await page.evaluate(`sessionStorage.getItem('idprov-token')`), null);
        assert.ok(!page.url().includes(expiredToken));
        await page.fill('#token', f.adminToken);
        await page.click('#save-token');
        await page.locator('#live', { hasText: 'live' }).waitFor();
        assert.equal(await page.evaluate(`sessionStorage.getItem('idprov-token')`), f.adminToken);
      });

      it('works from the keyboard: a dialog takes the focus, Escape closes it, and the focus returns', async () => {
        const c = await f.pendingDevice();
        await view('pending');
        await search('pending', c.id);
        const approve = row('pending', c.id).locator('button.approve');
        await approve.focus();
        await page.keyboard.press('Enter');
        await page.locator('#dialog').waitFor();
        assert.equal(await page.evaluate('document.activeElement.id'), 'dlg-match');
        // Tab stays inside the modal dialog.
        for (let i = 0; i < 6; i++) {
          await page.keyboard.press('Tab');
          assert.ok(await page.evaluate(`document.getElementById('dialog').contains(document.activeElement)`), `focus left the dialog after ${i + 1} Tab`);
        }
        await page.keyboard.press('Escape');
        await page.locator('#dialog').waitFor({ state: 'hidden' });
        assert.equal(await page.evaluate(`document.activeElement.closest('tr') && document.activeElement.closest('tr').dataset.id`), c.id);
        assert.equal(await page.evaluate(`document.activeElement.className`), 'ok approve');
        // Space ticks the box, Enter on Approve approves (once the button has finished its first run:
        // a busy button ignores a second press, and its dialog's end settles a turn after Escape).
        await page.waitForFunction(`document.activeElement && document.activeElement.className === 'ok approve' && !document.activeElement.hasAttribute('aria-busy')`);
        await page.keyboard.press('Enter');
        await page.locator('#dialog').waitFor();
        await page.keyboard.press('Space');
        await page.locator('#dialog-ok').focus();
        await page.keyboard.press('Enter');
        await page.locator('#message', { hasText: `Approved ${c.id}` }).waitFor();
        assert.equal((await c.provision()).status, 'approved');
      });

      it('logged no page error, no console error (CSP included), and never put the token in a URL', () => {
        assert.deepEqual(problems, []);
      });
    });
  }
});
