/**
 * What a device remembers between discoveries (docs/spec/idprov-coap-v1.md §7): the `kid` and `fp` a server
 * published in its TXT record, so that a later discovery that shows different ones is noticed — a
 * token key rotation changes `kid`, but a different `fp` (the DTLS certificate) or an unknown server
 * answering instead of the remembered one may be an impostor. {@link compareWithState} is pure; the
 * file helpers read and write the small JSON state file (mode 0600).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { DeviceSimError } from './errors.ts';

/** A server found by discovery. */
export interface DiscoveredServer {
  /** How it was found. */
  via: 'mdns' | 'coap';
  /** DNS-SD instance label (mDNS only). */
  instance?: string;
  /** SRV target host (mDNS only). */
  host?: string;
  /** Address to talk to. */
  address: string;
  /** CoAP port. */
  port: number;
  /** `coap://address:port`. */
  uri: string;
  /** TXT pairs (mDNS only). */
  txt?: Record<string, string>;
  kid?: string;
  fp?: string;
  coaps?: number;
}

/** One remembered server. */
export interface RememberedServer {
  kid?: string;
  fp?: string;
  uri: string;
  firstSeen: string;
  lastSeen: string;
}

/** The state file's content. */
export interface DiscoveryState {
  version: 1;
  servers: Record<string, RememberedServer>;
}

/** The key a server is remembered under: its instance name, else its address and port. */
export function serverKey(s: Pick<DiscoveredServer, 'instance' | 'address' | 'port'>): string {
  return s.instance !== undefined ? `mdns:${s.instance.toLowerCase()}` : `coap:${s.address}:${s.port}`;
}

/** A fresh, empty state. */
export function emptyState(): DiscoveryState {
  return { version: 1, servers: {} };
}

/**
 * Compare a discovery with what was remembered. Returns the warnings and the next state (the found
 * server remembered with what it shows now). `nowIso` is the time to record.
 */
export function compareWithState(prev: DiscoveryState, found: DiscoveredServer, nowIso: string): { warnings: string[]; next: DiscoveryState } {
  const warnings: string[] = [];
  let key = serverKey(found);
  const name = found.instance !== undefined ? `"${found.instance}"` : found.uri;
  // CoAP multicast gives no instance name: a remembered server at the same URI is the same one.
  if (found.instance === undefined && !prev.servers[key]) {
    const same = Object.entries(prev.servers).find(([, v]) => v.uri === found.uri);
    if (same) key = same[0];
  }
  const before = prev.servers[key];
  if (before) {
    if (before.fp !== undefined && found.fp !== undefined && before.fp !== found.fp) {
      warnings.push(`fp changed for ${name}: was ${before.fp}, now ${found.fp} — the server's DTLS certificate differs; this may be a different server using the same name: check with an admin before trusting it`);
    }
    if (before.kid !== undefined && found.kid !== undefined && before.kid !== found.kid) {
      warnings.push(`kid changed for ${name}: was ${before.kid}, now ${found.kid} — the token key was rotated, or this is a different server using the same name`);
    }
  } else {
    const others = Object.keys(prev.servers);
    if (others.length > 0) {
      warnings.push(`${name} was not seen before (remembered: ${others.map((k) => k.replace(/^(mdns|coap):/, '')).join(', ')}) — a new or replacement server, or a rogue one`);
    }
  }
  const entry: RememberedServer = { uri: found.uri, firstSeen: before?.firstSeen ?? nowIso, lastSeen: nowIso };
  const kid = found.kid ?? before?.kid;
  const fp = found.fp ?? before?.fp;
  if (kid !== undefined) entry.kid = kid;
  if (fp !== undefined) entry.fp = fp;
  return { warnings, next: { version: 1, servers: { ...prev.servers, [key]: entry } } };
}

/** Read the state file; a missing file is an empty state. */
export function readState(file: string): DiscoveryState {
  if (!existsSync(file)) return emptyState();
  try {
    const j = JSON.parse(readFileSync(file, 'utf8')) as Partial<DiscoveryState>;
    if (j.version !== 1 || typeof j.servers !== 'object' || j.servers === null) throw new Error('not a device-sim discovery state (version 1)');
    return { version: 1, servers: j.servers };
  } catch (e) {
    throw new DeviceSimError('usage', `cannot read the discovery state ${file}: ${(e as Error).message}`);
  }
}

/** Write the state file atomically (mode 0600). */
export function writeState(file: string, s: DiscoveryState): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}
