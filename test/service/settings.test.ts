/**
 * One source of defaults (issue 15): `DEFAULTS` is what `loadConfig()` gives, and the one mapping
 * `serviceSettings` (src/service/settings.ts) reads every setting it names — none is dropped or
 * restated under another name.
 */
import assert from 'node:assert/strict';
import { DEFAULTS, SETTINGS, loadConfig, type Config } from '../../src/config.ts';
import { serviceSettings, type ServiceConfig } from '../../src/service/settings.ts';

/** The keys of ServiceConfig; the compiler fails here when one is added or removed there. */
const SERVICE_KEYS = Object.keys({
  issuer: 0, audience: 0, hubUri: 0, provisionTokenTtl: 0, tokenTtl: 0, nonceTtl: 0, disabledRetry: 0,
  maxUsedNonces: 0, maxUsedNoncesUnvouched: 0, pendingRetryInitial: 0, pendingRetryStep: 0,
  pendingRetryMax: 0, rejectedRetry: 0, rateLimitAddress: 0, rateBurstAddress: 0, rateLimitDevice: 0,
  rateBurstDevice: 0, rateLimitMaxKeys: 0, manyIdsThreshold: 0, manyIdsWindow: 0, monitorMaxAddresses: 0,
  holdFlagged: 0, maxFlags: 0, maxPending: 0, pendingExpiry: 0, eventRetention: 0, maxEvents: 0,
} satisfies Record<keyof ServiceConfig, 0>) as Array<keyof ServiceConfig>;

describe('one source of defaults', () => {
  it('DEFAULTS is the configuration with no file, environment or flag', () => {
    assert.deepEqual({ ...DEFAULTS }, { ...loadConfig() });
    assert.ok(Object.isFrozen(DEFAULTS));
  });

  it('serviceSettings reads every setting it is given: changing any one changes the service settings', () => {
    const base = JSON.stringify(serviceSettings(DEFAULTS));
    for (const key of SERVICE_KEYS) {
      const s = SETTINGS.find((x) => x.key === key);
      assert.ok(s, `${key} is a setting`);
      const v = DEFAULTS[key];
      const changed: unknown = typeof v === 'boolean' ? !v : typeof v === 'number' ? v + 1 : `${String(v)}x`;
      const cfg = { ...DEFAULTS, [key]: changed } as Config;
      assert.notEqual(JSON.stringify(serviceSettings(cfg)), base, `${key} reaches the service settings`);
    }
  });

  it('changes a unit in one place only: eventRetention is days in the config, seconds in the service', () => {
    assert.equal(serviceSettings(DEFAULTS).monitor.eventRetentionS, DEFAULTS.eventRetention * 86_400);
  });
});
