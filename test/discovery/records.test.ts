/** Record building and query answering of docs/spec/idprov-coap-v1.md §7 (src/discovery/records.ts), pure. */
import assert from 'node:assert/strict';
import { selectInterfaces } from '../../src/discovery/interfaces.ts';
import {
  allRecords,
  buildRecords,
  decodeTxt,
  defaultInstanceName,
  instanceNameProblem,
  instanceOf,
  planAnswers,
  questionClass,
  renameInstance,
  txtPairs,
  type ServiceInfo,
} from '../../src/discovery/records.ts';

const info: ServiceInfo = {
  instance: 'idprov-gw',
  host: 'gw.local',
  port: 5683,
  txt: txtPairs({ kid: '0011223344556677', coaps: 5684, fp: 'q1w2e3' }),
  ipv4: ['10.213.7.1'],
  ipv6: ['fe80::1%vs0', 'fd13::1'],
};
const from = { address: '10.213.7.2', port: 5353 };

describe('discovery records (docs/spec/idprov-coap-v1.md §7)', () => {
  describe('building', () => {
    it('publishes a PTR from _idprov._udp.local to the instance, shared and without the cache-flush bit', () => {
      const r = buildRecords(info);
      assert.deepEqual(r.ptr, { name: '_idprov._udp.local', type: 'PTR', ttl: 4500, data: 'idprov-gw._idprov._udp.local' });
    });

    it('points the SRV at the host and the CoAP port, with the cache-flush bit and a 120 s TTL', () => {
      const r = buildRecords(info);
      assert.deepEqual(r.srv, { name: 'idprov-gw._idprov._udp.local', type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 5683, target: 'gw.local' } });
    });

    it('writes the TXT keys v, path, coaps, kid and fp in that order', () => {
      assert.deepEqual(buildRecords(info).txt.data, ['v=1', 'path=/idprov/request', 'coaps=5684', 'kid=0011223344556677', 'fp=q1w2e3']);
    });

    it('leaves coaps and fp out of the TXT until a DTLS server provides them', () => {
      assert.deepEqual(txtPairs({ kid: 'ab' }), [['v', '1'], ['path', '/idprov/request'], ['kid', 'ab']]);
    });

    it('publishes one A per IPv4 and one AAAA per IPv6 address, without the zone index', () => {
      const addrs = buildRecords(info).addresses.map((a) => [a.type, a.data, a.flush]);
      assert.deepEqual(addrs, [['A', '10.213.7.1', true], ['AAAA', 'fe80::1', true], ['AAAA', 'fd13::1', true]]);
    });

    it('builds goodbye records with TTL 0 for every record it announces', () => {
      const bye = allRecords(buildRecords(info, 0));
      assert.equal(bye.length, allRecords(buildRecords(info)).length);
      assert.ok(bye.every((r) => r.ttl === 0));
    });

    it('names the default instance idprov-<first label of the host name>', () => {
      assert.equal(defaultInstanceName('gateway.example.com'), 'idprov-gateway');
      assert.equal(defaultInstanceName('odd_host'), 'idprov-odd-host');
    });

    it('renames after a conflict to "name (2)", replacing an earlier suffix and staying within 63 bytes', () => {
      assert.equal(renameInstance('idprov-host', 2), 'idprov-host (2)');
      assert.equal(renameInstance('idprov-host (2)', 3), 'idprov-host (3)');
      const long = 'x'.repeat(63);
      assert.equal(Buffer.byteLength(renameInstance(long, 12)), 63);
      assert.ok(renameInstance(long, 12).endsWith(' (12)'));
    });

    it('rejects instance names with dots, control characters or more than 63 bytes', () => {
      assert.equal(instanceNameProblem('idprov-lab'), undefined);
      assert.ok(instanceNameProblem('a.b'));
      assert.ok(instanceNameProblem('a\nb'));
      assert.ok(instanceNameProblem('é'.repeat(32)));
    });

    it('parses TXT strings case-insensitively, first key winning, keys without = as empty values', () => {
      assert.deepEqual(decodeTxt([Buffer.from('V=1'), Buffer.from('kid=ab'), Buffer.from('kid=cd'), Buffer.from('flag'), Buffer.from('=x')]), { v: '1', kid: 'ab', flag: '' });
    });

    it('recognises an _idprov._udp instance name and extracts its label', () => {
      assert.equal(instanceOf('Evil (2)._idprov._udp.local'), 'Evil (2)');
      assert.equal(instanceOf('printer._ipp._tcp.local'), undefined);
    });
  });

  describe('answering (RFC 6762 §6, RFC 6763 §12)', () => {
    const r = buildRecords(info);

    it('answers a PTR browse with the PTR, and SRV, TXT, A and AAAA as additional records, by multicast', () => {
      const plan = planAnswers({ questions: [{ name: '_idprov._udp.local', type: 'PTR', class: 'IN' }], answers: [], source: from }, r);
      assert.ok(plan);
      assert.deepEqual(plan.route, { kind: 'multicast' });
      assert.deepEqual(plan.answers, [r.ptr]);
      assert.deepEqual(plan.additionals.map((a) => a.type), ['SRV', 'TXT', 'A', 'AAAA', 'AAAA']);
    });

    it('answers by unicast to the querier when the question has the unicast-response (QU) bit', () => {
      // dns-packet 5.6 decodes class IN|QU (0x8001) as the string UNKNOWN_32769.
      assert.deepEqual(questionClass('UNKNOWN_32769'), { klass: 1, qu: true });
      const plan = planAnswers({ questions: [{ name: '_idprov._udp.local', type: 'PTR', class: 'UNKNOWN_32769' }], answers: [], source: from }, r);
      assert.deepEqual(plan?.route, { kind: 'unicast', address: '10.213.7.2', port: 5353 });
    });

    it('answers a legacy query (source port not 5353) by unicast with its ID, the question, TTL ≤ 10 and no cache-flush bit', () => {
      const plan = planAnswers({ id: 4711, questions: [{ name: 'idprov-gw._idprov._udp.local', type: 'SRV', class: 'IN' }], answers: [], source: { address: '10.213.7.2', port: 40000 } }, r);
      assert.ok(plan && plan.route.kind === 'legacy');
      assert.equal(plan.route.id, 4711);
      assert.equal(plan.route.port, 40000);
      assert.deepEqual(plan.route.questions.map((q) => q.type), ['SRV']);
      assert.ok([...plan.answers, ...plan.additionals].every((a) => (a.ttl ?? 0) <= 10 && a.flush === false));
    });

    it('suppresses an answer the querier already knows with at least half its TTL (RFC 6762 §7.1)', () => {
      const known = { ...r.ptr, ttl: 4000 };
      assert.equal(planAnswers({ questions: [{ name: '_idprov._udp.local', type: 'PTR' }], answers: [known], source: from }, r), undefined);
      const stale = { ...r.ptr, ttl: 100 };
      assert.ok(planAnswers({ questions: [{ name: '_idprov._udp.local', type: 'PTR' }], answers: [stale], source: from }, r));
    });

    it('answers SRV, TXT, A and AAAA questions for its own names, case-insensitively, and ANY with all of them', () => {
      const ask = (name: string, type: string) => planAnswers({ questions: [{ name, type }], answers: [], source: from }, r)?.answers.map((a) => a.type);
      assert.deepEqual(ask('IDPROV-GW._idprov._udp.local', 'TXT'), ['TXT']);
      assert.deepEqual(ask('idprov-gw._idprov._udp.local', 'ANY'), ['SRV', 'TXT']);
      assert.deepEqual(ask('gw.local', 'A'), ['A']);
      assert.deepEqual(ask('gw.local', 'AAAA'), ['AAAA', 'AAAA']);
      assert.deepEqual(ask('_services._dns-sd._udp.local', 'PTR'), ['PTR']);
    });

    it('stays silent for questions about other names', () => {
      assert.equal(planAnswers({ questions: [{ name: '_ipp._tcp.local', type: 'PTR' }, { name: 'other.local', type: 'A' }], answers: [], source: from }, r), undefined);
    });
  });

  describe('interface selection', () => {
    const table = {
      lo: [{ address: '127.0.0.1', family: 'IPv4' as const, internal: true }],
      vs0: [
        { address: '10.213.7.1', family: 'IPv4' as const, internal: false },
        { address: 'fe80::1', family: 'IPv6' as const, internal: false, scopeid: 2 },
      ],
      vs1: [{ address: 'fd13::1', family: 'IPv6' as const, internal: false }],
    };

    it('uses every interface but loopback when none is configured', () => {
      assert.deepEqual(selectInterfaces(table, []).selected.map((i) => i.name), ['vs0', 'vs1']);
    });

    it('selects interfaces by name or by one of their addresses and reports unknown ones', () => {
      const s = selectInterfaces(table, ['vs1', '10.213.7.1', 'eth9']);
      assert.deepEqual(s.selected.map((i) => i.name), ['vs1', 'vs0']);
      assert.deepEqual(s.unknown, ['eth9']);
    });
  });
});
