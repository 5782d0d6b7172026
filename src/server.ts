/**
 * The composition root (docs/architecture.md "Composition root"): configuration in, concrete adapters built (SQLite store,
 * UDP sockets, the CoAP engine), servers started. Nothing below this file picks an adapter.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { chmodSync, createReadStream, mkdirSync, readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { AdminAuth } from './admin/auth.ts';
import { ensureAdminTokenFile } from './admin/token-file.ts';
import { AdminQueries } from './service/admin-queries.ts';
import { Metrics } from './admin/metrics.ts';
import { buildSidecar } from './admin/sidecar.ts';
import { ObservedStore } from './service/changes.ts';
import { startDiscovery, type Discovery } from './discovery/index.ts';
import { defaultInstanceName } from './discovery/records.ts';
import { join, resolve } from 'node:path';
import type { Config } from './config.ts';
import { ProvError } from './errors.ts';
import type { Logger } from './log.ts';
import { AdminService, ensureTokenKey } from './service/admin.ts';
import { NONCE_SECRET_SETTINGS, SETTING_NONCE_SECRET, adoptNonceSecrets, readNonceSecrets } from './service/nonce-secret.ts';
import type { NonceSecrets } from './protocol/nonce.ts';
import { AllowlistImporter } from './service/allowlist-import.ts';
import { ProvisioningService } from './service/provisioning.ts';
import type { Membership } from './store/postgres/membership.ts';
import type { PostgresStore } from './store/postgres/store.ts';
import { SqliteStore } from './store/sqlite/store.ts';
import type { Store } from './store/store.ts';
import { TokenKeyring } from './tokens/keyring.ts';
import { pooledRandom } from './tokens/random.ts';
import { SourceLimit } from './policy/source-limit.ts';
import { COAP_MAX_KEYS, registerResources } from './device-api/resources.ts';
import { unverifiedLimits } from './device-api/unverified.ts';
import { PSK_RELOAD_RETRY_MS, PskIndex } from './service/psk-index.ts';
import { SecurityMonitor } from './service/monitor/security-monitor.ts';
import { monitorSettings, serviceSettings } from './service/settings.ts';
import { ProvisioningSwitch } from './service/switch.ts';
import { VERSION } from './version.ts';
import { CoapServer } from './transport/coap/engine.ts';
import type { Source } from './transport/source.ts';
import { UdpTransport } from './transport/coap/udp.ts';
import { loadOrCreateCertificate } from './transport/dtls/cert.ts';
import type { PskLookup } from './transport/dtls/psk.ts';
import { DtlsTransport } from './transport/dtls/server.ts';
import type { DatagramTransport } from './transport/datagram.ts';

/** How often the maintenance sweep runs (expiry of waiting requests, event retention, caps). */
export const SWEEP_INTERVAL_MS = 60_000;
/**
 * How often the sightings of waiting devices (repeat polls) are written (src/service/pending-seen.ts;
 * what a kill -9 may lose of them: docs/architecture.md "Durability").
 */
export const SIGHTINGS_FLUSH_MS = 5_000;

/** A running server. */
export interface RunningServer {
  config: Readonly<Config>;
  service: ProvisioningService;
  admin: AdminService;
  /** The one allowlist import path (uploads, files, a program's own entries). */
  importer: AllowlistImporter;
  store: SqliteStore | PostgresStore;
  keyring: TokenKeyring;
  coap: CoapServer;
  auth: AdminAuth;
  sidecar: FastifyInstance;
  /** The bound CoAP/UDP port (useful with port 0). */
  coapPort: number;
  /** The CoAP-over-DTLS transport (docs/spec/idprov-coap-v1.md §6) and its bound port. */
  dtls: DtlsTransport;
  coapsPort: number;
  /** base64url SHA-256 of the DTLS certificate's SubjectPublicKeyInfo (discovery's `fp`, docs/spec/idprov-coap-v1.md §7). */
  dtlsFingerprint: string;
  /** The in-memory DTLS-PSK keys of the allowlist (service/psk-index.ts). */
  pskIndex: PskIndex;
  /** The bound admin sidecar port. */
  adminPort: number;
  /** Path of the admin token written at first start. */
  adminTokenFile: string;
  /** Instances on the shared PostgreSQL database (absent with SQLite); see docs/scale-out.md. */
  membership?: Membership;
  /**
   * Re-read the token keys and the nonce secret now (after `idprov keys rotate` or `idprov nonce-secret
   * rotate`; also every 10 s and on SIGHUP).
   */
  reloadKeys(): Promise<void>;
  /** Stop listening, finish in-flight work, close the store. */
  close(): Promise<void>;
}

async function bindUdp(address: string, port: number, log: Logger, reuseAddr = false): Promise<UdpTransport> {
  try {
    return await UdpTransport.bind({ address, port, log, reuseAddr });
  } catch (e) {
    if (address === '::') {
      log.warn({ err: (e as Error).message }, 'IPv6 unavailable; binding CoAP to 0.0.0.0');
      return UdpTransport.bind({ address: '0.0.0.0', port, log, reuseAddr });
    }
    throw e;
  }
}

/**
 * The CoAP-over-DTLS transport (docs/spec/idprov-coap-v1.md §6): the P-256 certificate from the configured paths or
 * created in the data directory at first start, and PSK identity = device ID → PSK = that device's
 * out-of-band secret from its (unexpired) allowlist entry.
 */
async function bindDtls(cfg: Readonly<Config>, pskLookup: PskLookup, nowS: () => number, log: Logger): Promise<{ transport: DtlsTransport; port: number; fingerprint: string }> {
  const dir = resolve(cfg.dataDir);
  const cert = loadOrCreateCertificate({
    certPath: cfg.dtlsCert || join(dir, 'dtls-cert.pem'),
    keyPath: cfg.dtlsKey || join(dir, 'dtls-key.pem'),
    create: cfg.dtlsCert === '',
    nowMs: nowS() * 1000,
  });
  if (cert.created) log.info({ fp: cert.fingerprint }, 'created the DTLS certificate');
  // Issue 11 F6: new handshakes per source address and /64 (the ECDHE flight costs a key generation
  // and a signature; a PSK one a store lookup).
  const handshakes = new SourceLimit({ rate: cfg.dtlsHandshakeRate, burst: cfg.dtlsHandshakeBurst }, cfg.rateLimitMaxKeys);
  const opts = {
    certificate: cert,
    pskLookup,
    maxSessions: cfg.dtlsMaxSessions,
    maxHandshakes: cfg.dtlsMaxHandshakes,
    maxHandshakesPerAddress: cfg.dtlsMaxHandshakesPerAddress,
    admitHandshake: (src: Source, nowMs: number) => handshakes.take(src.address, src.prefix, nowMs).ok,
    idleTimeoutMs: cfg.dtlsIdleTimeout * 1000,
    handshakeTimeoutMs: cfg.dtlsHandshakeTimeout * 1000,
    mtu: cfg.dtlsMtu,
    log: log.child({ c: 'dtls' }),
  };
  let t;
  try {
    t = await DtlsTransport.bind({ ...opts, address: cfg.bind, port: cfg.coapsPort });
  } catch (e) {
    if (cfg.bind !== '::') throw e;
    log.warn({ err: (e as Error).message }, 'IPv6 unavailable; binding CoAPS to 0.0.0.0');
    t = await DtlsTransport.bind({ ...opts, address: '0.0.0.0', port: cfg.coapsPort });
  }
  return { transport: t, port: t.address().port, fingerprint: cert.fingerprint };
}

/**
 * Import an allowlist file (upsert, all or nothing) through the one import path the sidecar uses
 * (service/allowlist-import.ts): streamed from disk, staged by the store (in the data directory), written in one
 * bulk transaction — never the whole file in memory. @returns the entries written.
 * @throws ProvError('malformed') listing bad rows (then nothing is imported).
 */
export async function importAllowlistFile(store: Store, path: string, cfg: Readonly<Config>, now: number, log: Logger): Promise<number> {
  const importer = new AllowlistImporter(store, () => now, cfg.minSecretLength);
  const r = await importer.import(createReadStream(path), { format: 'auto', mode: 'all', actor: { by: 'cli' }, maxRows: Number.POSITIVE_INFINITY, source: path });
  for (const w of r.warnings) log.warn({ file: path, line: w.line, id: w.id }, w.message);
  if (r.invalid > 0) {
    const lines = r.errors.map((e) => `line ${e.line}${e.id ? ` (${e.id})` : ''}: ${e.message}`);
    if (r.invalid > r.errors.length) lines.push(`… and ${r.invalid - r.errors.length} more`);
    throw new ProvError('malformed', `allowlist ${path}: ${r.invalid} bad row(s), nothing imported:\n  ${lines.join('\n  ')}`);
  }
  const n = r.added + r.updated;
  log.info({ file: path, entries: n, added: r.added }, 'allowlist imported');
  return n;
}

/**
 * Open the configured store: the data directory's SQLite database (creating the directory with mode
 * 0700), or with `store: 'postgres'` the PostgreSQL database at `databaseUrl` (docs/scale-out.md).
 */
export async function openStore(cfg: Readonly<Config>, log: Logger): Promise<SqliteStore | PostgresStore> {
  const dir = resolve(cfg.dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  // Loaded only when configured: an SQLite install never loads `pg`.
  if (cfg.store === 'postgres') {
    const { PostgresStore } = await import('./store/postgres/store.ts');
    return PostgresStore.open(cfg.databaseUrl, { log: log.child({ c: 'store' }), stagingDir: dir });
  }
  return SqliteStore.open(join(dir, 'idprov.db'), { log: log.child({ c: 'store' }) });
}

/** The package version (for health and logs). */
export { VERSION };

/** Start the server on its configuration. `clock` (ms) is injectable for tests. */
export async function startServer(cfg: Readonly<Config>, log: Logger, clock: () => number = Date.now): Promise<RunningServer> {
  const opened = await openStore(cfg, log);
  const shared = cfg.store === 'postgres' ? (opened as PostgresStore) : undefined;
  const changes = new ObservedStore(opened);
  const store = changes.store;
  const transports: DatagramTransport[] = [];
  let sidecar: FastifyInstance | undefined;
  let discovery: Discovery | undefined;
  try {
    const nowS = () => Math.floor(clock() / 1000);
    const keys = await ensureTokenKey(store, nowS());
    const keyring = new TokenKeyring(keys, Math.max(cfg.tokenTtl, cfg.provisionTokenTtl));
    // The nonce secret: the configured one (fixed), else the database's (docs/scale-out.md "Nonce
    // secret"), created at first start and re-read when `idprov nonce-secret rotate` changes it.
    let nonceSecrets: NonceSecrets | undefined = cfg.nonceSecret ? { current: Buffer.from(cfg.nonceSecret, 'hex') } : await readNonceSecrets(store, nowS());
    if (!nonceSecrets) {
      const secretHex = randomBytes(32).toString('hex');
      await store.apply([{ kind: 'setting.put', name: SETTING_NONCE_SECRET, value: secretHex }]);
      nonceSecrets = { current: Buffer.from(secretHex, 'hex') };
    }
    const nonceKeys: NonceSecrets = nonceSecrets;
    const reloadNonceSecret = async (): Promise<void> => {
      if (cfg.nonceSecret) return;
      try {
        const next = await readNonceSecrets(store, nowS());
        if (next && adoptNonceSecrets(nonceKeys, next)) log.info({ previousUntil: next.previousUntil }, 'nonce secret rotated');
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'nonce secret reload failed');
      }
    };
    const coap = new CoapServer({ log: log.child({ c: 'coap' }), maxPayload: cfg.maxPayload, unverified: unverifiedLimits(cfg) });
    const random = pooledRandom();
    const monitor = new SecurityMonitor(monitorSettings(cfg), random);
    const provisioningSwitch = new ProvisioningSwitch();
    let service: ProvisioningService | undefined;
    const metrics = new Metrics({
      store,
      usedNonces: () => service?.usedNonceCount ?? 0,
      coapStats: () => ({ ...coap.stats }) as unknown as Record<string, number>,
      monitor: () => monitor.sizes,
    });
    service = new ProvisioningService({
      observe: metrics.observe,
      store,
      keyring,
      log: log.child({ c: 'prov' }),
      clock,
      random,
      nonceSecret: nonceKeys,
      settings: serviceSettings(cfg),
      monitor,
      switch: provisioningSwitch,
      sharedStore: shared !== undefined,
    });
    await service.start();
    // Repeat polls of waiting devices are answered from memory (service/waiting-view.ts): the view
    // follows every commit from the moment it subscribes, and fills from the store in the background.
    const unwatchWaiting = changes.subscribe(service.onStoreChange);
    void service.loadWaitingView().then((n) => log.info({ waiting: n }, 'waiting requests in memory')).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'loading the waiting requests failed'));
    const admin = new AdminService({ store, keyring, log: log.child({ c: 'admin' }), now: nowS, monitor, switch: provisioningSwitch });
    await admin.loadSwitch();
    if (cfg.allowlist) await importAllowlistFile(store, cfg.allowlist, cfg, nowS(), log);

    registerResources(coap, service, () => keyring.keySet(nowS(), COAP_MAX_KEYS));
    // CoAP multicast discovery binds group sockets to the same port, which needs SO_REUSEADDR.
    const udp = await bindUdp(cfg.bind, cfg.coapPort, log, cfg.coapMulticast);
    transports.push(udp);
    coap.attach(udp);
    const coapPort = udp.address().port;
    // PSK handshakes look keys up in memory (service/psk-index.ts); the index follows the allowlist's
    // changes from the moment it subscribes, and answers from the store until its first load is done.
    const pskIndex = new PskIndex(store, nowS, log.child({ c: 'psk' }), (again) => setTimeout(again, PSK_RELOAD_RETRY_MS).unref());
    const unwatchPsk = changes.subscribe(pskIndex.onChange);
    void pskIndex.reload();
    const dtls = await bindDtls(cfg, pskIndex.lookup, nowS, log);
    transports.push(dtls.transport);
    coap.attach(dtls.transport);

    const auth = await AdminAuth.open(store);
    const importer = new AllowlistImporter(store, nowS, cfg.minSecretLength);
    const adminTokenFile = join(resolve(cfg.dataDir), 'admin.token');
    await ensureAdminTokenFile(adminTokenFile, auth, cfg.adminTokenTtl, nowS(), log);
    let membership: Membership | undefined;
    sidecar = await buildSidecar({
      ...(shared ? { instances: () => membership?.instances ?? [] } : {}),
      changes,
      service,
      admin,
      queries: new AdminQueries({ store, keyring }),
      auth,
      importer,
      minSecretLength: cfg.minSecretLength,
      metrics,
      log: log.child({ c: 'sidecar' }),
      now: nowS,
      version: VERSION,
      maxWatchers: cfg.adminMaxWatchers,
      watchersPerToken: cfg.adminWatchersPerToken,
      streamLifetimeS: cfg.adminStreamLifetime,
      ...(cfg.adminCert ? { https: { cert: readFileSync(cfg.adminCert), key: readFileSync(cfg.adminKey) } } : {}),
    });
    await sidecar.listen({ host: cfg.adminBind, port: cfg.adminPort });
    const addr = sidecar.server.address();
    const adminPort = typeof addr === 'object' && addr ? addr.port : cfg.adminPort;

    // Pick up key rotations made by `idprov keys rotate` while running (WAL allows a second writer).
    // Also on demand: SIGHUP (see src/cli/idprov.ts) calls reloadKeys().
    let lastKid = keyring.current.kid;
    const reloadKeys = async (): Promise<void> => {
      try {
        const ks = await store.listKeys();
        // The signer is the newest *unretired* key: a rotation within the same second as the previous
        // key's creation sorts the new key by kid, not necessarily first.
        const signer = ks.find((k) => k.retiredAt === undefined) ?? ks[0];
        if (signer && signer.kid !== lastKid) {
          keyring.load(ks);
          lastKid = keyring.current.kid;
          log.info({ kid: lastKid }, 'token key rotated');
          discovery?.setTxt({ kid: lastKid });
        }
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'key reload failed');
      }
    };
    const keyWatch = setInterval(() => void reloadKeys().then(reloadNonceSecret), 10_000);
    keyWatch.unref();

    // Bounded growth (issue #6): expire stale waiting requests, prune old events, trim flags — once at
    // start, then every minute. One sweep at a time.
    let sweeping: Promise<unknown> | undefined;
    const runSweep = (): void => {
      if (sweeping) return;
      sweeping = service!
        .sweep()
        .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'maintenance sweep failed'))
        .finally(() => (sweeping = undefined));
    };
    runSweep();
    const sweepTimer = setInterval(runSweep, SWEEP_INTERVAL_MS);
    sweepTimer.unref();
    const flushSightings = (): Promise<unknown> =>
      service!.flushSightings().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'writing the sightings of waiting devices failed'));
    const sightingsTimer = setInterval(() => void flushSightings(), SIGHTINGS_FLUSH_MS);
    sightingsTimer.unref();

    // Instances sharing a PostgreSQL database trust each other's mDNS names while their heartbeats are
    // fresh (docs/scale-out.md): the monitor reads the live list.
    const memberId = randomBytes(6).toString('hex');
    const startedAt = nowS();
    membership =
      shared
        ? new (await import('./store/postgres/membership.ts')).Membership(
            shared,
            () => ({ id: memberId, name: discovery?.instanceName ?? (cfg.instanceName || defaultInstanceName(hostname())), host: hostname(), coapPort, coapsPort: dtls.port, adminPort, version: VERSION, startedAt }),
            cfg.trustedServers,
            nowS,
            log.child({ c: 'members' }),
          )
        : undefined;

    // Registered before it announces itself by mDNS, so that the siblings' rogue monitors, which
    // re-read the membership before an alert (refreshTrusted), find it live.
    await membership?.start();

    // Discovery (docs/spec/idprov-coap-v1.md §7, docs/discovery.md): mDNS advertiser, rogue monitor, CoAP multicast.
    discovery = await startDiscovery({
      mdns: cfg.mdns,
      rogueMonitor: cfg.rogueMonitor,
      coapMulticast: cfg.coapMulticast,
      instanceName: cfg.instanceName,
      interfaces: cfg.discoveryInterfaces,
      trustedServers: membership?.trusted ?? cfg.trustedServers,
      ...(membership ? { refreshTrusted: async () => (await membership!.beat(), membership!.healthy) } : {}),
      alertWebhook: cfg.alertWebhook,
      coap,
      unicast: udp,
      bind: cfg.bind,
      coapPort,
      txt: { kid: keyring.current.kid, coaps: dtls.port, fp: dtls.fingerprint },
      admin,
      log,
      clock,
    });
    // TXT `kid` follows rotations made through the admin service (the key watch covers the CLI).
    const disc = discovery;
    const unwatchKeys = changes.subscribe((muts, _v, foreign) => {
      for (const m of muts) if (m.kind === 'key.put' && m.key.retiredAt === undefined) disc.setTxt({ kid: m.key.kid });
      // A rotation by another instance on the shared database: load it now, not at the next poll.
      if (foreign?.has('key.put')) void reloadKeys();
      // A nonce-secret rotation, here or (any setting changed) at another instance or the CLI.
      if (foreign?.has('setting.put') || muts.some((m) => m.kind === 'setting.put' && NONCE_SECRET_SETTINGS.includes(m.name))) void reloadNonceSecret();
    });
    // Another writer's commits — instances sharing a PostgreSQL database (LISTEN/NOTIFY, docs/scale-out.md),
    // or another process such as the CLI on the SQLite file — wake this one's long polls and SSE
    // streams, change its ETags and reload what it holds in memory (keys, nonce secret, PSK index).
    const unlisten = opened.onForeignChange ? await opened.onForeignChange((kinds) => changes.foreign(kinds)) : () => undefined;

    log.info(
      { coap: coapPort, coaps: dtls.port, fp: dtls.fingerprint, bind: cfg.bind, admin: `${cfg.adminCert ? 'https' : 'http'}://${cfg.adminBind.includes(':') ? `[${cfg.adminBind}]` : cfg.adminBind}:${adminPort}`, data: resolve(cfg.dataDir), kid: keyring.current.kid, provisioning: service.provisioning.enabled },
      'idprov listening',
    );
    const sc = sidecar;
    return {
      config: cfg,
      service,
      admin,
      importer,
      store: opened,
      keyring,
      coap,
      auth,
      sidecar: sc,
      coapPort,
      dtls: dtls.transport,
      coapsPort: dtls.port,
      dtlsFingerprint: dtls.fingerprint,
      pskIndex,
      adminPort,
      adminTokenFile,
      reloadKeys: async () => {
        await reloadKeys();
        await reloadNonceSecret();
      },
      ...(membership ? { membership } : {}),
      async close() {
        clearInterval(keyWatch);
        clearInterval(sweepTimer);
        clearInterval(sightingsTimer);
        await sweeping;
        unwatchKeys();
        unwatchPsk();
        unwatchWaiting();
        pskIndex.stop();
        unlisten();
        await membership?.stop(memberId);
        await disc.close();
        await sc.close();
        await coap.close();
        await Promise.all(transports.map((t) => t.close()));
        await flushSightings();
        await opened.close();
      },
    };
  } catch (e) {
    await discovery?.close().catch(() => undefined);
    await sidecar?.close().catch(() => undefined);
    await Promise.all(transports.map((t) => t.close().catch(() => undefined)));
    await opened.close().catch(() => undefined);
    throw e;
  }
}
