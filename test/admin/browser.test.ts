/**
 * The approval web page in headless Chromium (Debian `chromium`, driven by playwright-core): paste the
 * admin token, see the pending device with its key fingerprint, approve it, and watch the simulated
 * device receive its token over CoAP; revoke and reject in the page; flip the provisioning switch.
 * (Since issue 14 the page is the console of docs/console.md: views behind tabs, and approve, reject
 * and revoke go through a dialog — the fingerprint confirmed, a reason given. test/admin/console.test.ts
 * covers the rest of it.)
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ERROR_TABLE } from '../../src/errors.ts';
import { startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = '/tmp/idprov-page.png';

describe('approval web page in headless Chromium', function () {
  let f: AdminFixture;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  before(async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install the Debian package chromium (npm run test:setup does)`);
    f = await startAdminServer('web');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
  });
  after(async () => {
    await browser?.close();
    await f?.close();
  });

  let loggedIn = false;
  /** Open the page and paste the admin token (once; the page keeps it for the tab). */
  async function login(): Promise<void> {
    await page.goto(`${f.base}/`);
    await page.fill('#token', readFileSync(f.server.adminTokenFile, 'utf8').trim());
    await page.click('#save-token');
    loggedIn = true;
  }
  const ensureLoggedIn = async () => {
    if (!loggedIn) await login();
  };

  /** The row of a device in one of the page's tables. */
  const row = (table: 'pending' | 'devices', id: string) => page.locator(`#${table} tr[data-id="${id}"]`);
  /** Show one of the console's views. */
  const view = (name: 'pending' | 'devices') => page.click(`#tab-${name}`);
  /** Confirm the open dialog: tick the box when there is one, give a reason when asked. */
  async function confirmDialog(reason?: string): Promise<void> {
    if (reason !== undefined) await page.fill('#dlg-reason', reason);
    else await page.check('#dlg-match');
    await page.click('#dialog-ok');
    await page.locator('#dialog').waitFor({ state: 'hidden' });
  }

  it('shows a pending device with its key fingerprint once the admin token is pasted', async () => {
    const c = await f.pendingDevice();
    await page.goto(`${f.base}/`);
    await page.locator('#message', { hasText: 'Paste an admin token' }).waitFor();
    await login();
    const tr = row('pending', c.id);
    await tr.waitFor();
    assert.equal(await tr.locator('td').nth(0).innerText(), c.id);
    assert.equal(await tr.locator('td').nth(1).innerText(), c.fingerprint);
    assert.match(await tr.locator('td').nth(4).innerText(), /^127\.0\.0\.1:\d+$/);
    assert.equal(await page.locator('#prov-state').innerText(), 'accepted');
  });

  it('approves the device with its Approve button, and the device gets its token at its next request', async () => {
    await ensureLoggedIn();
    const c = await f.pendingDevice();
    await page.click('#save-token');
    await view('pending');
    await row('pending', c.id).waitFor();
    await page.click(`tr[data-id="${c.id}"] button.approve`);
    await confirmDialog();
    await page.locator('#message', { hasText: `Approved ${c.id}` }).waitFor();
    await row('pending', c.id).waitFor({ state: 'detached' });
    const r = await c.provision();
    assert.equal(r.status, 'approved', JSON.stringify(r));
    assert.equal(r.claims!.sub, c.id);
    // The page follows the event feed: the new device shows up without a reload.
    await view('devices');
    const dev = row('devices', c.id);
    await dev.waitFor();
    assert.equal(await dev.locator('td').nth(1).innerText(), c.fingerprint);
    assert.equal(await dev.locator('td').nth(6).innerText(), 'active');
  });

  it('revokes a device with its Revoke button: the page shows who revoked it and the device can no longer refresh', async () => {
    await ensureLoggedIn();
    const c = await f.provisionedDevice();
    await page.click('#save-token');
    await view('devices');
    await row('devices', c.id).waitFor();
    await page.click(`#devices tr[data-id="${c.id}"] button.revoke`);
    await confirmDialog('lost in the field');
    await page.locator(`#devices tr[data-id="${c.id}"] td`, { hasText: 'revoked by admin:admin' }).waitFor();
    assert.equal(await row('devices', c.id).locator('button.enable').count(), 1, 'a re-enable button replaces revoke');
    const r = await c.refresh();
    assert.deepEqual([r.status, r.err], ['refused', ERROR_TABLE.revoked.err]);
  });

  it('revokes and re-enables a device whose ID is ".." (possible in an older database) with its buttons', async () => {
    await ensureLoggedIn();
    const now = Math.floor(Date.now() / 1000);
    // Written to the store directly, as an older database holds it; a provisioning through the
    // service then moves the devices list's ETag on, so the page's cached list is not reused.
    await f.server.store.apply([{ kind: 'device.upsert', device: { id: '..', pk: new Uint8Array(32).fill(7), type: 0, via: 'admin', provisionedAt: now, lastSeen: now } }]);
    await f.provisionedDevice();
    await page.click('#save-token');
    await view('devices');
    await row('devices', '..').waitFor();
    await page.click('#devices tr[data-id=".."] button.revoke');
    await confirmDialog('an old record');
    await page.locator('#devices tr[data-id=".."] td', { hasText: 'revoked by admin:admin' }).waitFor();
    assert.equal((await f.server.store.getRevocation('..'))?.by, 'admin:admin');
    await page.click('#devices tr[data-id=".."] button.enable');
    await page.locator('#devices tr[data-id=".."] td', { hasText: 'active' }).waitFor();
    assert.equal(await f.server.store.getRevocation('..'), undefined);
  });

  it('rejects a pending device with its Reject button, and the device is refused', async () => {
    await ensureLoggedIn();
    const c = await f.pendingDevice();
    await page.click('#save-token');
    await view('pending');
    await page.click(`tr[data-id="${c.id}"] button.reject`);
    await confirmDialog('not ours');
    await page.locator('#message', { hasText: `Rejected ${c.id}` }).waitFor();
    const r = await c.provision();
    assert.deepEqual([r.status, r.err], ['refused', ERROR_TABLE.rejected.err]);
  });

  it('switches provisioning off with a reason and on again', async () => {
    await ensureLoggedIn();
    await page.fill('#prov-why', 'stocktaking');
    await page.click('#prov-toggle');
    await page.locator('#prov-state', { hasText: 'refused (5.03)' }).waitFor();
    assert.equal(await page.locator('#prov-reason').innerText(), 'stocktaking');
    const c = f.device();
    await f.allow({ id: c.id, pk: c.publicKey });
    assert.equal((await c.provision()).code, '5.03');
    await page.click('#prov-toggle');
    await page.locator('#prov-state', { hasText: 'accepted' }).waitFor();
    assert.equal((await c.provision()).status, 'approved');
  });

  it('refuses to load inside a frame of another origin (frame-ancestors, X-Frame-Options)', async () => {
    // A page of another origin (another loopback port) that frames the approval page.
    const foreign: Server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><iframe id="victim" src="${f.base}/"></iframe>`));
    await new Promise<void>((r) => foreign.listen(0, '127.0.0.1', r));
    const other = await browser.newPage();
    try {
      const port = (foreign.address() as { port: number }).port;
      const framed = other.waitForEvent('framenavigated', (fr) => fr !== other.mainFrame());
      await other.goto(`http://127.0.0.1:${port}/`);
      const frame = await framed;
      await frame.waitForLoadState('load');
      // A blocked frame shows the browser's error page: none of the page's elements, none of its script.
      assert.equal(await frame.locator('#token').count(), 0, `the page rendered in the frame (${frame.url()})`);
      assert.equal(await frame.locator('#save-token').count(), 0);
    } finally {
      await other.close();
      await new Promise<void>((r) => foreign.close(() => r()));
    }
  });

  it('is readable: a screenshot is written to /tmp/idprov-page.png and the page logged no errors', async () => {
    await ensureLoggedIn();
    await f.pendingDevice();
    await f.pendingDevice({ mac: '24:0a:c4:12:34:56' });
    await page.click('#save-token');
    await view('pending');
    await page.locator('#pending tbody tr').nth(1).waitFor();
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(existsSync(SCREENSHOT));
    // Nothing overflows the page sideways at this width.
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the window`);
    assert.deepEqual(problems, []);
  });
});
