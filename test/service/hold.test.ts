/**
 * holdFlagged against forgers (issue #11, F2; README "Holding flagged devices"): a flag holds a device
 * only when a request signed with the key being approved raised it. What anyone can raise with a key
 * of their own — a key-mismatch, an OOB failure for a keyless entry, a MAC under another ID — is shown
 * to admins and holds nobody; what the device's own key did still holds it.
 */
import assert from 'node:assert/strict';
import { TestDevice } from '../support/device.ts';
import { allow, ask, codeOf, rig, show, type Rig } from '../support/service-rig.ts';

const GENUINE = '192.0.2.20:5683';
const FORGER = '203.0.113.77:40000';
const MAC = Buffer.from('02000000aa01', 'hex');

describe('holding flagged devices against forgers (F2)', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await rig({}, { holdFlagged: true });
  });
  afterEach(async () => {
    await r.close();
  });

  const openKinds = (id: string): string[] => r.svc.monitor.flags.openFor(id).map((f) => f.kind);

  it('does not hold an allowlisted device for a key-mismatch a forger raised in its name', async () => {
    const dev = new TestDevice('hold-km');
    await allow(r, dev);
    assert.equal((await ask(r, new TestDevice(dev.id), FORGER)).body.err, 4);
    assert.deepEqual(openKinds(dev.id), ['key-mismatch'], 'the admin still sees the attempt');
    const out = await ask(r, dev, GENUINE);
    assert.equal(codeOf(out), '2.01', show(out));
  });

  it('does not hold a provisioned device after a forger raised key-changed, cleared or not', async () => {
    const dev = new TestDevice('hold-kc');
    await allow(r, dev);
    assert.equal(codeOf(await ask(r, dev, GENUINE)), '2.01');
    const forger = new TestDevice(dev.id);
    assert.equal(codeOf(await ask(r, forger, FORGER)), '4.03');
    assert.equal(codeOf(await ask(r, dev, GENUINE)), '2.01');
    const flag = r.svc.monitor.flags.openFor(dev.id)[0]!;
    await r.admin.clearFlag(flag.id, 'test', { by: 'admin:test' });
    assert.equal(codeOf(await ask(r, forger, FORGER)), '4.03', 'raised again after the clear');
    assert.equal(codeOf(await ask(r, dev, GENUINE)), '2.01');
  });

  it('does not hold a device whose MAC a forger reports under another ID, and holds the ID that reported it', async () => {
    const dev = new TestDevice('hold-mac');
    await allow(r, dev, { mac: MAC });
    assert.equal(codeOf(await ask(r, dev, GENUINE, { mac: MAC })), '2.01');
    const clone = new TestDevice('hold-mac-clone');
    await allow(r, clone);
    const held = await ask(r, clone, FORGER, { mac: MAC });
    assert.equal(codeOf(held), '2.05', `the ID that reports a MAC recorded for another device is held: ${show(held)}`);
    assert.deepEqual(openKinds(dev.id), ['duplicate-mac']);
    const out = await ask(r, dev, GENUINE, { mac: MAC });
    assert.equal(codeOf(out), '2.01', show(out));
  });

  it('does not hold a device for out-of-band failures of keys it never used', async () => {
    const dev = new TestDevice('hold-oob');
    await allow(r, dev, { pk: undefined, secret: 'label-code-7Q4K-x' });
    for (let i = 0; i < 3; i++) assert.equal((await ask(r, new TestDevice(dev.id), FORGER, { secret: 'guess-guess-guess' })).body.err, 11);
    assert.deepEqual(openKinds(dev.id), ['oob-failed']);
    const out = await ask(r, dev, GENUINE, { secret: 'label-code-7Q4K-x' });
    assert.equal(codeOf(out), '2.01', show(out));
  });

  it('still holds a key that failed the out-of-band proof before proving it, whatever other keys did since', async () => {
    const dev = new TestDevice('hold-guess');
    await allow(r, dev, { pk: undefined, secret: 'label-code-7Q4K-y' });
    assert.equal((await ask(r, dev, GENUINE, { secret: 'wrong-secret-1' })).body.err, 11);
    for (let i = 0; i < 3; i++) await ask(r, new TestDevice(dev.id), FORGER, { secret: 'wrong-secret-2' });
    const out = await ask(r, dev, GENUINE, { secret: 'label-code-7Q4K-y' });
    assert.equal(codeOf(out), '2.05', `held: this key failed before: ${show(out)}`);
  });
});
