/**
 * Probing, conflict handling and the advertiser's life cycle (RFC 6762 §8–§10): the pure rules of
 * src/discovery/probe.ts, then MdnsAdvertiser over an in-memory endpoint (no sockets, no waiting).
 */
import assert from 'node:assert/strict';
import type mdns from 'multicast-dns';
import { MdnsAdvertiser } from '../../src/discovery/advertiser.ts';
import { PublishedHistory, competingProbe, probeDelay, probeQuery, probeTiebreak, responseConflicts } from '../../src/discovery/probe.ts';
import { buildRecords, txtPairs, type Answer } from '../../src/discovery/records.ts';
import { silentLogger } from '../../src/log.ts';
import { FakeEndpoint, manualClock, noWait } from '../support/discovery-fakes.ts';

const info = { instance: 'idprov-gw', host: 'gw.local', port: 5683, txt: txtPairs({ kid: 'aa' }), ipv4: ['10.213.7.1'], ipv6: [] };
const ours = buildRecords(info);
const foreignSrv = (name: string, port = 9999): Answer => ({ name, type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port, target: 'other.local' } });

function advertiser(ep: FakeEndpoint, over: Partial<ConstructorParameters<typeof MdnsAdvertiser>[0]> = {}): MdnsAdvertiser {
  return new MdnsAdvertiser({ endpoint: ep, instance: 'idprov-gw', host: 'gw.local', port: 5683, txt: { kid: 'aa' }, ipv4: ['10.213.7.1'], ipv6: [], log: silentLogger, now: manualClock().now, sleep: noWait, ...over });
}

/** A network where the given names are held by another host, which defends them. */
function takenNames(ep: FakeEndpoint, ...names: string[]): void {
  ep.network = (p) => {
    const q = p.questions?.[0];
    if (p.type !== 'query' || !q) return;
    const hit = names.find((n) => `${n}._idprov._udp.local`.toLowerCase() === q.name.toLowerCase());
    if (hit) ep.inject({ type: 'response', answers: [foreignSrv(q.name)] });
  };
}

describe('probing and conflicts (RFC 6762 §8, §9)', () => {
  describe('rules', () => {
    it('sends a probe as an ANY question with the proposed records in the authority section', () => {
      const p = probeQuery(ours.srv.name, [ours.srv, ours.txt]);
      assert.deepEqual(p.questions, [{ name: 'idprov-gw._idprov._udp.local', type: 'ANY' }]);
      assert.deepEqual(p.authorities?.map((a) => a.type), ['SRV', 'TXT']);
    });

    it('sees a conflict in a response that gives the instance name other data', () => {
      assert.equal(responseConflicts({ answers: [foreignSrv(ours.srv.name)] }, ours.srv.name, [ours.srv, ours.txt]), true);
    });

    it('sees no conflict in identical data, a goodbye, a negative answer or another name', () => {
      const name = ours.srv.name;
      assert.equal(responseConflicts({ answers: [ours.srv, ours.txt] }, name, [ours.srv, ours.txt]), false);
      assert.equal(responseConflicts({ answers: [{ ...foreignSrv(name), ttl: 0 }] }, name, [ours.srv]), false);
      assert.equal(responseConflicts({ answers: [{ name, type: 'NSEC', ttl: 120, data: {} }] }, name, [ours.srv]), false);
      assert.equal(responseConflicts({ answers: [foreignSrv('x._idprov._udp.local')] }, name, [ours.srv]), false);
    });

    it('compares names case-insensitively when looking for conflicts', () => {
      assert.equal(responseConflicts({ additionals: [foreignSrv('IDPROV-GW._idprov._udp.local')] }, ours.srv.name, [ours.srv]), true);
    });

    it('does not mistake its own earlier records (looped back after a TXT update) for a conflict', () => {
      const h = new PublishedHistory();
      const oldTxt = buildRecords({ ...info, txt: txtPairs({ kid: 'old' }) }).txt;
      h.add([oldTxt]);
      assert.equal(responseConflicts({ answers: [oldTxt] }, ours.srv.name, [ours.srv, ours.txt], h), false);
    });

    it('decides a simultaneous probe by comparing the authority records, the later data winning (§8.2)', () => {
      const higher = foreignSrv(ours.srv.name, 65000);
      const lower = foreignSrv(ours.srv.name, 1);
      assert.equal(probeTiebreak([ours.srv], [higher]), 'lose');
      assert.equal(probeTiebreak([ours.srv], [lower]), 'win');
      assert.equal(probeTiebreak([ours.srv, ours.txt], [ours.txt, ours.srv]), 'tie');
      assert.equal(probeTiebreak([ours.srv, ours.txt], [ours.txt]), 'win');
    });

    it('recognises a competing probe only when it asks about our name and carries authority records', () => {
      const probe = probeQuery(ours.srv.name, [foreignSrv(ours.srv.name)]);
      assert.equal(competingProbe(probe, ours.srv.name)?.length, 1);
      assert.equal(competingProbe({ questions: [{ name: ours.srv.name, type: 'ANY' }] }, ours.srv.name), undefined);
    });

    it('slows probing to one per 5 s after 15 conflicts within 10 s', () => {
      const t = 100_000;
      assert.equal(probeDelay(Array.from({ length: 14 }, (_, i) => t - i), t), 0);
      assert.equal(probeDelay(Array.from({ length: 15 }, (_, i) => t - i), t), 5000);
      assert.equal(probeDelay(Array.from({ length: 15 }, () => t - 20_000), t), 0);
    });
  });

  describe('the advertiser', () => {
    it('probes three times, then announces every record twice (§8.1, §8.3)', async () => {
      const ep = new FakeEndpoint();
      const adv = advertiser(ep);
      await adv.start();
      assert.equal(ep.probesSent().length, 3);
      await adv.announced();
      await adv.close();
      const announcements = ep.responsesSent().filter((p) => p.answers?.every((a) => (a.ttl ?? 0) > 0));
      assert.equal(announcements.length, 2);
      assert.deepEqual(announcements[0]!.answers!.map((a) => a.type).sort(), ['A', 'PTR', 'PTR', 'SRV', 'TXT']);
    });

    it('renames itself "idprov-gw (2)" when the name is taken, and "(3)" when that is taken too', async () => {
      const ep = new FakeEndpoint();
      takenNames(ep, 'idprov-gw', 'idprov-gw (2)');
      const adv = advertiser(ep);
      await adv.start();
      assert.equal(adv.instanceName, 'idprov-gw (3)');
      assert.equal(adv.state, 'announced');
      const ptr = ep.responsesSent()[0]!.answers!.find((a) => a.type === 'PTR' && a.name === '_idprov._udp.local');
      assert.equal(ptr?.data, 'idprov-gw (3)._idprov._udp.local');
      await adv.close();
    });

    it('backs off and probes the same name again after losing a simultaneous probe', async () => {
      const ep = new FakeEndpoint();
      let competed = false;
      ep.network = (p) => {
        if (p.type === 'query' && p.authorities?.length && !competed) {
          competed = true;
          ep.inject(probeQuery(ours.srv.name, [foreignSrv(ours.srv.name, 65000)]));
        }
      };
      const adv = advertiser(ep);
      await adv.start();
      assert.equal(adv.instanceName, 'idprov-gw');
      assert.ok(ep.probesSent().length >= 4, 'probed again after losing');
      await adv.close();
    });

    it('ignores its own probe looped back by the kernel', async () => {
      const ep = new FakeEndpoint();
      ep.network = (p) => p.type === 'query' && ep.inject(p);
      const adv = advertiser(ep);
      await adv.start();
      assert.equal(adv.instanceName, 'idprov-gw');
      assert.equal(ep.probesSent().length, 3);
      await adv.close();
    });

    it('answers a browse query once announced, and not while probing', async () => {
      const ep = new FakeEndpoint();
      const adv = advertiser(ep);
      const started = adv.start();
      ep.inject({ type: 'query', questions: [{ name: '_idprov._udp.local', type: 'PTR' }] });
      assert.equal(ep.responsesSent().length, 0);
      await started;
      const before = ep.responsesSent().length;
      ep.inject({ type: 'query', questions: [{ name: '_idprov._udp.local', type: 'PTR' }] });
      await new Promise<void>((r) => setImmediate(r));
      const reply = ep.responsesSent()[before];
      assert.ok(reply);
      assert.equal(reply.answers?.[0]?.type, 'PTR');
      await adv.close();
    });

    it('replies by unicast to a QU question', async () => {
      const ep = new FakeEndpoint();
      const adv = advertiser(ep);
      await adv.start();
      ep.inject({ type: 'query', questions: [{ name: '_idprov._udp.local', type: 'PTR', class: 'UNKNOWN_32769' }] }, { address: '10.213.7.2', port: 5353 });
      await new Promise<void>((r) => setImmediate(r));
      assert.ok(ep.sent.some((s) => s.to !== 'multicast' && s.to.address === '10.213.7.2' && s.packet.type === 'response'));
      await adv.close();
    });

    it('announces the new TXT when the token key rotates', async () => {
      const ep = new FakeEndpoint();
      const adv = advertiser(ep);
      await adv.start();
      const before = ep.responsesSent().length;
      await adv.setTxt({ kid: 'bb' });
      const after = ep.responsesSent().slice(before);
      const txt = after[0]?.answers?.find((a) => a.type === 'TXT');
      assert.ok((txt?.data as string[]).includes('kid=bb'));
      assert.equal(txt?.flush, true);
      assert.equal(adv.isOurs(buildRecords({ ...info, txt: txtPairs({ kid: 'aa' }) }).txt), true, 'the old TXT is still recognised as ours');
      await adv.close();
    });

    it('sends goodbyes with TTL 0 for every announced record on close', async () => {
      const ep = new FakeEndpoint();
      const adv = advertiser(ep);
      await adv.start();
      await adv.close();
      const last = ep.responsesSent().at(-1);
      assert.ok(last?.answers?.length);
      assert.ok(last.answers.every((a: mdns.Answer) => a.ttl === 0));
      assert.equal(adv.state, 'closed');
    });

    it('probes again and renames when another host claims its name after it was announced (§9)', async () => {
      const ep = new FakeEndpoint();
      const adv = advertiser(ep);
      await adv.start();
      takenNames(ep, 'idprov-gw');
      ep.inject({ type: 'response', answers: [foreignSrv('idprov-gw._idprov._udp.local')] });
      await (adv as unknown as { running: Promise<void> }).running;
      assert.equal(adv.instanceName, 'idprov-gw (2)');
      assert.equal(adv.state, 'announced');
      await adv.close();
    });
  });
});
