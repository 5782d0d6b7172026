/** `device-sim discover` remembers kid/fp (tools/device-sim/discover-state.ts) and warns when they change. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { compareWithState, emptyState, readState, writeState, type DiscoveredServer } from '../../../tools/device-sim/discover-state.ts';
import { tempDir } from '../../support/temp-dir.ts';

const viaMdns = (kid: string, fp: string, instance = 'idprov-gw'): DiscoveredServer => ({
  via: 'mdns',
  instance,
  host: 'gw.local',
  address: '10.213.7.1',
  port: 5683,
  uri: 'coap://10.213.7.1:5683',
  kid,
  fp,
});
const NOW = '2027-01-01T00:00:00.000Z';

describe('device-sim discover state', () => {
  it('remembers the first server without a warning', () => {
    const { warnings, next } = compareWithState(emptyState(), viaMdns('aa', 'F1'), NOW);
    assert.deepEqual(warnings, []);
    assert.deepEqual(next.servers['mdns:idprov-gw'], { uri: 'coap://10.213.7.1:5683', kid: 'aa', fp: 'F1', firstSeen: NOW, lastSeen: NOW });
  });

  it('warns when a later discovery shows a different kid', () => {
    const s1 = compareWithState(emptyState(), viaMdns('aa', 'F1'), NOW).next;
    const { warnings, next } = compareWithState(s1, viaMdns('bb', 'F1'), NOW);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /^kid changed for "idprov-gw": was aa, now bb/);
    assert.equal(next.servers['mdns:idprov-gw']!.kid, 'bb');
  });

  it('warns when a later discovery shows a different fp (another DTLS certificate)', () => {
    const s1 = compareWithState(emptyState(), viaMdns('aa', 'F1'), NOW).next;
    const { warnings } = compareWithState(s1, viaMdns('aa', 'F2'), NOW);
    assert.match(warnings[0]!, /^fp changed for "idprov-gw"/);
  });

  it('warns when a server it has not seen before answers instead of the remembered one', () => {
    const s1 = compareWithState(emptyState(), viaMdns('aa', 'F1'), NOW).next;
    const { warnings } = compareWithState(s1, viaMdns('cc', 'F3', 'evil'), NOW);
    assert.match(warnings[0]!, /^"evil" was not seen before/);
  });

  it('takes a CoAP multicast answer from a remembered address as the same server, keeping its kid and fp', () => {
    const s1 = compareWithState(emptyState(), viaMdns('aa', 'F1'), NOW).next;
    const { warnings, next } = compareWithState(s1, { via: 'coap', address: '10.213.7.1', port: 5683, uri: 'coap://10.213.7.1:5683' }, NOW);
    assert.deepEqual(warnings, []);
    assert.equal(next.servers['mdns:idprov-gw']!.kid, 'aa');
  });

  it('writes the state file with mode 0600 and reads it back', async () => {
    const t = tempDir();
    try {
      const file = join(t.dir, 'state.json');
      const s = compareWithState(emptyState(), viaMdns('aa', 'F1'), NOW).next;
      writeState(file, s);
      assert.deepEqual(readState(file), s);
      const { statSync } = await import('node:fs');
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.deepEqual(readState(join(t.dir, 'missing.json')), emptyState());
    } finally {
      t.cleanup();
    }
  });
});
