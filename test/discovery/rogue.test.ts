/**
 * Rogue classification (src/discovery/rogue.ts, pure, clock passed in), the monitor over an
 * in-memory endpoint, and the alert: log, event, provisioning switch, webhook (to a local HTTP server
 * on 127.0.0.1).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type mdns from 'multicast-dns';
import { ROGUE_EVENT, raiseRogueAlert, rogueReason, type AlertTarget } from '../../src/discovery/alert.ts';
import { RogueMonitor } from '../../src/discovery/rogue-monitor.ts';
import { buildRecords, sameRecord, txtPairs, type Answer } from '../../src/discovery/records.ts';
import { RogueTracker, classifyInstance, isTrusted, type RogueReport, type SelfView } from '../../src/discovery/rogue.ts';
import { silentLogger } from '../../src/log.ts';
import { FakeEndpoint, noWait } from '../support/discovery-fakes.ts';

const ours = buildRecords({ instance: 'idprov-gw', host: 'gw.local', port: 5683, txt: txtPairs({ kid: 'aa' }), ipv4: ['10.213.7.1'], ipv6: [] });
const self: SelfView = { instance: 'idprov-gw', isOurs: (r) => [ours.ptr, ours.srv, ours.txt, ...ours.addresses].some((o) => sameRecord(o, r)) };

/** What avahi-publish -s evil _idprov._udp 5683 v=1 … announces. */
function announcement(instance: string, o: { port?: number; txt?: string[]; ttl?: number; host?: string } = {}): mdns.Packet {
  const fqdn = `${instance}._idprov._udp.local`;
  const ttl = o.ttl ?? 4500;
  const host = o.host ?? 'evil.local';
  return {
    type: 'response',
    answers: [
      { name: '_idprov._udp.local', type: 'PTR', ttl, data: fqdn },
      { name: fqdn, type: 'SRV', ttl: Math.min(ttl, 120), flush: true, data: { priority: 0, weight: 0, port: o.port ?? 5683, target: host } },
      { name: fqdn, type: 'TXT', ttl, flush: true, data: (o.txt ?? ['v=1', 'path=/idprov/request']).map((s) => Buffer.from(s)) },
    ],
    additionals: [{ name: host, type: 'A', ttl: Math.min(ttl, 120), flush: true, data: '10.213.7.2' }],
  };
}
const T0 = 1_800_000_000_000;

describe('rogue servers (docs/spec/idprov-coap-v1.md §7)', () => {
  describe('classification', () => {
    it('classifies our own records as self, a listed name as trusted and anything else as rogue', () => {
      assert.equal(classifyInstance('idprov-gw', [ours.srv, ours.txt], self, []), 'self');
      assert.equal(classifyInstance('idprov-ha2', [], self, ['idprov-ha2']), 'trusted');
      assert.equal(classifyInstance('evil', [], self, ['idprov-ha2']), 'rogue');
    });

    it('classifies an instance that uses our name with other data as rogue', () => {
      const fake: Answer = { ...ours.srv, data: { priority: 0, weight: 0, port: 5683, target: 'evil.local' } };
      assert.equal(classifyInstance('idprov-gw', [fake], self, []), 'rogue');
    });

    it('matches trusted names case-insensitively, as a label or as the full service instance name', () => {
      assert.equal(isTrusted('IDPROV-HA2', ['idprov-ha2']), true);
      assert.equal(isTrusted('idprov-ha2', ['idprov-ha2._idprov._udp.local.']), true);
      assert.equal(isTrusted('idprov-ha3', ['idprov-ha2']), false);
    });
  });

  describe('the tracker', () => {
    it('alerts once with host, port, TXT and addresses when an untrusted instance announces itself', () => {
      const t = new RogueTracker(self, []);
      const actions = t.observe(announcement('evil', { txt: ['v=1', 'path=/idprov/request', 'kid=0102'] }), '10.213.7.2', T0);
      assert.deepEqual(actions, [
        {
          kind: 'alert',
          rogue: { instance: 'evil', host: 'evil.local', port: 5683, txt: { v: '1', path: '/idprov/request', kid: '0102' }, addresses: ['10.213.7.2'], source: '10.213.7.2', impersonates: false, partial: false },
        },
      ]);
      assert.deepEqual(t.observe(announcement('evil', { txt: ['v=1', 'path=/idprov/request', 'kid=0102'] }), '10.213.7.2', T0 + 1000), []);
    });

    it('ignores this server\'s own announcements and trusted servers', () => {
      const t = new RogueTracker(self, ['idprov-ha2']);
      assert.deepEqual(t.observe({ answers: [ours.ptr, ours.srv, ours.txt] }, '10.213.7.1', T0), []);
      assert.deepEqual(t.observe(announcement('idprov-ha2'), '10.213.7.3', T0), []);
    });

    it('asks for SRV and TXT when only the PTR was seen, and alerts when they arrive', () => {
      const t = new RogueTracker(self, []);
      const ptrOnly = { answers: [{ name: '_idprov._udp.local', type: 'PTR', ttl: 4500, data: 'evil._idprov._udp.local' }] as Answer[] };
      assert.deepEqual(t.observe(ptrOnly, '10.213.7.2', T0), [{ kind: 'resolve', fqdn: 'evil._idprov._udp.local' }]);
      const rest = announcement('evil');
      const actions = t.observe({ answers: rest.answers!.slice(1) }, '10.213.7.2', T0 + 10);
      assert.equal(actions[0]?.kind, 'alert');
    });

    it('alerts with what it knows when SRV and TXT do not come within the resolve timeout', () => {
      const t = new RogueTracker(self, [], 3000);
      t.observe({ answers: [{ name: '_idprov._udp.local', type: 'PTR', ttl: 4500, data: 'mute._idprov._udp.local' }] }, '10.213.7.2', T0);
      assert.deepEqual(t.tick(T0 + 2999), []);
      const [a] = t.tick(T0 + 3000);
      assert.ok(a && a.kind === 'alert');
      assert.equal(a.rogue.partial, true);
      assert.equal(a.rogue.host, undefined);
    });

    it('alerts again when a rogue changes what it publishes, but not for the same data', () => {
      const t = new RogueTracker(self, []);
      t.observe(announcement('evil'), '10.213.7.2', T0);
      const changed = t.observe(announcement('evil', { port: 6000 }), '10.213.7.2', T0 + 1);
      assert.equal(changed.length, 1);
      assert.equal(changed[0]!.kind === 'alert' && changed[0]!.rogue.port, 6000);
    });

    it('notes a goodbye, and alerts again when the rogue comes back', () => {
      const t = new RogueTracker(self, []);
      t.observe(announcement('evil'), '10.213.7.2', T0);
      assert.deepEqual(t.observe(announcement('evil', { ttl: 0 }), '10.213.7.2', T0 + 1), [{ kind: 'gone', instance: 'evil', source: '10.213.7.2' }]);
      assert.equal(t.observe(announcement('evil'), '10.213.7.2', T0 + 2)[0]?.kind, 'alert');
    });

    it('forgets a rogue whose records expired', () => {
      const t = new RogueTracker(self, []);
      t.observe(announcement('evil', { ttl: 10 }), '10.213.7.2', T0);
      assert.deepEqual(t.tick(T0 + 9_999), []);
      assert.deepEqual(t.tick(T0 + 10_000), [{ kind: 'gone', instance: 'evil', source: '10.213.7.2' }]);
      assert.deepEqual(t.rogues, []);
    });

    it('flags an instance that answers with our name and other data as an impersonator', () => {
      const t = new RogueTracker(self, []);
      const [a] = t.observe(announcement('idprov-gw', { host: 'evil.local' }), '10.213.7.2', T0);
      assert.ok(a && a.kind === 'alert');
      assert.equal(a.rogue.impersonates, true);
    });

    it('treats another server as rogue while this server has not claimed a name yet', () => {
      const t = new RogueTracker({ instance: undefined, isOurs: () => false }, []);
      assert.equal(t.observe(announcement('idprov-gw'), '10.213.7.2', T0)[0]?.kind, 'alert');
    });
  });

  describe('the monitor and the alert', () => {
    class FakeAdmin implements AlertTarget {
      readonly calls: unknown[][] = [];
      async setProvisioning(enabled: boolean, reason: string | undefined, actor: { by: string }) {
        this.calls.push(['setProvisioning', enabled, reason, actor]);
      }
      async recordAlert(kind: string, detail: Record<string, unknown>, actor?: { by: string }) {
        this.calls.push(['recordAlert', kind, detail, actor]);
      }
    }

    it('browses _idprov._udp.local at start and raises the alert when a rogue announces itself', async () => {
      const ep = new FakeEndpoint();
      const seen: RogueReport[] = [];
      const mon = new RogueMonitor({ endpoint: ep, self, trusted: [], onRogue: (r) => void seen.push(r), log: silentLogger, now: () => T0, sleep: noWait, maxQueryIntervalMs: 1000 });
      mon.start();
      assert.deepEqual(ep.sent[0]?.packet.questions, [{ name: '_idprov._udp.local', type: 'PTR' }]);
      ep.inject(announcement('evil'), { address: '10.213.7.2', port: 5353 });
      await mon.settled();
      await mon.close();
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.instance, 'evil');
    });

    it('logs, disables provisioning as the system, writes the event and posts the webhook', async () => {
      const bodies: { body: unknown; type: string | undefined }[] = [];
      const http = createServer((req: IncomingMessage, res) => {
        let data = '';
        req.on('data', (c) => (data += c));
        req.on('end', () => {
          bodies.push({ body: JSON.parse(data), type: req.headers['content-type'] });
          res.end('ok');
        });
      });
      await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
      try {
        const admin = new FakeAdmin();
        const rogue: RogueReport = { instance: 'evil', host: 'evil.local', port: 5683, txt: { v: '1' }, addresses: ['10.213.7.2'], source: '10.213.7.2', impersonates: false, partial: false };
        const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/hook?token=s3cret`;
        await raiseRogueAlert(rogue, { admin, log: silentLogger, webhook: url, server: 'idprov-gw', now: () => T0 });
        assert.deepEqual(admin.calls[0], ['setProvisioning', false, rogueReason(rogue), { by: 'system' }]);
        assert.match(String(admin.calls[0]![2]), /^rogue provisioning server seen: "evil" at evil\.local:5683/);
        assert.deepEqual(admin.calls[1], ['recordAlert', ROGUE_EVENT, { instance: 'evil', host: 'evil.local', port: 5683, txt: { v: '1' }, addresses: ['10.213.7.2'], source: '10.213.7.2' }, { by: 'system' }]);
        assert.equal(bodies.length, 1);
        assert.equal(bodies[0]!.type, 'application/json');
        assert.deepEqual(bodies[0]!.body, { kind: ROGUE_EVENT, at: new Date(T0).toISOString(), server: 'idprov-gw', message: rogueReason(rogue), rogue });
      } finally {
        await new Promise<void>((r) => http.close(() => r()));
      }
    });

    it('still disables provisioning when the webhook cannot be reached', async () => {
      const admin = new FakeAdmin();
      const failing = (async () => {
        throw new Error('connection refused');
      }) as unknown as typeof fetch;
      const rogue: RogueReport = { instance: 'evil', addresses: [], source: '10.213.7.2', impersonates: false, partial: true };
      await raiseRogueAlert(rogue, { admin, log: silentLogger, webhook: 'http://127.0.0.1:9/x', now: () => T0, fetch: failing });
      assert.equal(admin.calls[0]![0], 'setProvisioning');
      assert.match(String(admin.calls[0]![2]), /host unknown/);
    });
  });
});
