/**
 * A flood of distinct fake IDs leaves memory and the database bounded by the caps (issue #6). Real
 * signed requests (nonce challenge answered, Ed25519 signature) from unknown IDs, spread over many
 * source addresses, go through the provisioning service of the real server; half of the IDs come
 * back with another key (a `key-changed` flag each), every address sends several IDs (`many-ids`).
 * The caps are small here so that 5,000 requests overflow every one of them.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { parseResponse } from '../../../src/protocol/messages.ts';
import { buildRequest } from '../../../tools/device-sim/client.ts';
import { startAdminServer, type AdminFixture } from '../../support/admin-server.ts';
import { codeOf, peer } from '../../support/service-rig.ts';

const IDS = 5000;
const PER_ADDRESS = 5;
const CAPS = {
  maxPending: 500,
  maxFlags: 50,
  monitorMaxAddresses: 100,
  rateLimitMaxKeys: 200,
  maxEvents: 1000,
  manyIdsThreshold: 3,
};

describe('a flood of distinct fake IDs', function () {
  this.timeout(120_000);
  let f: AdminFixture;

  before(async () => {
    f = await startAdminServer('flood', CAPS);
  });
  after(async () => {
    await f?.close();
  });

  it(`keeps pending requests, flags, trackers and events within their caps after ${IDS.toLocaleString('en')} unknown IDs`, async () => {
    const svc = f.server.service;
    const keys = [generateKeyPairSync('ed25519').privateKey, generateKeyPairSync('ed25519').privateKey];
    /** Challenge, then the signed request with the nonce: the device side of docs/spec/idprov-coap-v1.md §3. */
    const ask = async (id: string, key: (typeof keys)[number], from: string): Promise<string> => {
      const source = peer(from);
      const first = await svc.request(buildRequest({ id, key }), { source });
      assert.equal(codeOf(first), '4.01');
      const out = await svc.request(buildRequest({ id, key, nonce: first.body.nonce! }), { source });
      return codeOf(out);
    };
    const codes = new Map<string, number>();
    const count = (c: string) => codes.set(c, (codes.get(c) ?? 0) + 1);
    const batch: Promise<void>[] = [];
    for (let i = 0; i < IDS; i++) {
      const id = `fake-${i}`;
      const source = `10.${(i / PER_ADDRESS / 250) | 0}.${((i / PER_ADDRESS) | 0) % 250}.1:5683`;
      batch.push(
        (async () => {
          count(await ask(id, keys[0]!, source));
          if (i % 2 === 0) count(await ask(id, keys[1]!, source));
        })(),
      );
      if (batch.length >= 50) await Promise.all(batch.splice(0));
    }
    await Promise.all(batch);
    assert.deepEqual([...codes.keys()], ['2.05'], `every signed request was told to wait: ${JSON.stringify([...codes])}`);

    const store = f.server.store;
    assert.ok((await store.pendingWaiting()) <= CAPS.maxPending, `waiting ${await store.pendingWaiting()}`);
    const counts = await store.counts();
    assert.ok(counts.pending <= CAPS.maxPending, `pending rows ${counts.pending}`);
    assert.ok(counts.flags <= CAPS.maxFlags, `flag rows ${counts.flags}`);
    assert.ok(svc.monitor.flags.size <= CAPS.maxFlags, `open flags in memory ${svc.monitor.flags.size}`);
    assert.ok(svc.monitor.flags.evicted > 0, 'the flood overflowed the flag cap');
    assert.ok(svc.monitor.tracker.size <= CAPS.monitorMaxAddresses, `addresses tracked ${svc.monitor.tracker.size}`);
    assert.ok(svc.monitor.tracker.entries <= CAPS.monitorMaxAddresses * CAPS.manyIdsThreshold, `IDs tracked ${svc.monitor.tracker.entries}`);
    assert.ok(svc.monitor.addressLimits.size <= CAPS.rateLimitMaxKeys, `address buckets ${svc.monitor.addressLimits.size}`);
    assert.ok(svc.monitor.deviceLimits.size <= CAPS.rateLimitMaxKeys, `device buckets ${svc.monitor.deviceLimits.size}`);
    assert.ok(counts.allowlist === 0 && counts.devices === 0, 'nothing was provisioned');

    // Events grow with the flood until the sweep (every minute in a running server) trims them.
    assert.ok(counts.events > CAPS.maxEvents, `the flood wrote ${counts.events} events`);
    const swept = await svc.sweep();
    assert.ok(swept.eventsPruned > 0);
    assert.ok((await store.counts()).events <= CAPS.maxEvents + 1, 'the cap, plus the sweep event itself');

    // The server still answers a real device normally.
    const c = f.device({ id: 'after-the-flood' });
    await f.allow({ id: c.id, pk: c.publicKey });
    assert.equal((await c.provision()).status, 'approved');
    assert.equal(parseResponse((await c.post('/idprov/request', c.requestBodyMap())).payload).err, 3, 'and challenges as usual');
  });
});
