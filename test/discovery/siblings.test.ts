/**
 * A sibling instance on the shared database is not a rogue (issue 16, docs/scale-out.md
 * "Membership"): the rogue monitor re-reads who is trusted (`refreshTrusted`, the membership's
 * heartbeat) before it raises an alert, so an instance that announced itself before this one's next
 * heartbeat saw it does not switch provisioning off. Found by test/integration/scale-out-netns.test.ts
 * (each of two instances started together disabled provisioning for the other); this is the same case
 * without namespaces, over an in-memory mDNS endpoint.
 */
import assert from 'node:assert/strict';
import type mdns from 'multicast-dns';
import type { AlertTarget } from '../../src/discovery/alert.ts';
import { startDiscovery, type DiscoveryOptions } from '../../src/discovery/index.ts';
import { silentLogger } from '../../src/log.ts';
import { FakeEndpoint } from '../support/discovery-fakes.ts';

function announcement(instance: string): mdns.Packet {
  const fqdn = `${instance}._idprov._udp.local`;
  return {
    type: 'response',
    answers: [
      { name: '_idprov._udp.local', type: 'PTR', ttl: 4500, data: fqdn },
      { name: fqdn, type: 'SRV', ttl: 120, flush: true, data: { priority: 0, weight: 0, port: 5683, target: 'sib.local' } },
      { name: fqdn, type: 'TXT', ttl: 4500, flush: true, data: [Buffer.from('v=1'), Buffer.from('path=/idprov/request')] },
    ],
    additionals: [{ name: 'sib.local', type: 'A', ttl: 120, flush: true, data: '10.213.7.2' }],
  };
}

class FakeAdmin implements AlertTarget {
  readonly calls: unknown[][] = [];
  async setProvisioning(enabled: boolean, reason: string | undefined) {
    this.calls.push(['setProvisioning', enabled, reason]);
  }
  async recordAlert(kind: string) {
    this.calls.push(['recordAlert', kind]);
  }
}

async function seeAnnouncement(instance: string, extra: Partial<DiscoveryOptions>): Promise<FakeAdmin> {
  const ep = new FakeEndpoint();
  const admin = new FakeAdmin();
  const d = await startDiscovery({
    mdns: true,
    rogueMonitor: true,
    coapMulticast: false,
    instanceName: 'idprov-a',
    interfaces: [],
    trustedServers: [],
    alertWebhook: '',
    coap: {} as never,
    unicast: {} as never,
    bind: '0.0.0.0',
    coapPort: 5683,
    txt: { kid: 'aa' },
    admin,
    log: silentLogger,
    clock: () => 1_800_000_000_000,
    networkInterfaces: () => ({ eth0: [{ address: '10.213.7.1', family: 'IPv4', internal: false, netmask: '255.255.255.0', mac: '02:00:00:00:00:01', cidr: '10.213.7.1/24' }] }),
    hostname: 'a',
    endpoint: ep,
    ...extra,
  });
  try {
    ep.inject(announcement(instance), { address: '10.213.7.2', port: 5353 });
    await d.monitor!.settled();
  } finally {
    await d.close();
  }
  return admin;
}

describe('a sibling instance started a moment ago is not a rogue server', () => {
  it('re-reads the trusted list before alerting, and does not alert for a sibling found there', async () => {
    const trusted: string[] = [];
    let refreshed = 0;
    const admin = await seeAnnouncement('idprov-b', {
      trustedServers: trusted,
      refreshTrusted: async () => {
        refreshed++;
        trusted.push('idprov-b'); // its first heartbeat is in the database by now
        return true;
      },
    });
    assert.equal(refreshed, 1);
    assert.deepEqual(admin.calls, [], 'provisioning stays on');
  });

  it('still alerts for a server the refreshed list does not name', async () => {
    const admin = await seeAnnouncement('evil', { trustedServers: ['idprov-b'], refreshTrusted: async () => true });
    assert.equal(admin.calls[0]?.[0], 'setProvisioning');
    assert.equal(admin.calls[0]?.[1], false);
  });

  it('raises nothing while the membership cannot be read (cut off from the database): it cannot tell a sibling from a rogue', async () => {
    const admin = await seeAnnouncement('idprov-b', { trustedServers: [], refreshTrusted: async () => false });
    assert.deepEqual(admin.calls, [], 'provisioning stays on');
  });

  it('alerts at once without a membership (no refreshTrusted: a single instance)', async () => {
    const admin = await seeAnnouncement('idprov-b', {});
    assert.equal(admin.calls[0]?.[0], 'setProvisioning');
  });
});
