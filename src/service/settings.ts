/**
 * The one mapping from the configuration (src/config.ts `SETTINGS`, the only place a default is
 * written) to the settings of the provisioning service, its policy and its security monitor: names
 * and units change here and nowhere else. Tests build their settings with
 * `serviceSettings(DEFAULTS)` and override what they test.
 */
import type { Config } from '../config.ts';
import type { PolicySettings } from '../policy/decide.ts';
import type { MonitorSettings, ServiceSettings } from './provisioning.ts';

const DAY_S = 86_400;

/** The configuration keys the provisioning service reads. */
export type ServiceConfig = Pick<
  Config,
  | 'issuer'
  | 'audience'
  | 'hubUri'
  | 'provisionTokenTtl'
  | 'tokenTtl'
  | 'nonceTtl'
  | 'disabledRetry'
  | 'maxUsedNonces'
  | 'maxUsedNoncesUnvouched'
  | 'pendingRetryInitial'
  | 'pendingRetryStep'
  | 'pendingRetryMax'
  | 'rejectedRetry'
  | 'rateLimitAddress'
  | 'rateBurstAddress'
  | 'rateLimitDevice'
  | 'rateBurstDevice'
  | 'rateLimitMaxKeys'
  | 'manyIdsThreshold'
  | 'manyIdsWindow'
  | 'monitorMaxAddresses'
  | 'holdFlagged'
  | 'maxFlags'
  | 'maxPending'
  | 'pendingExpiry'
  | 'eventRetention'
  | 'maxEvents'
>;

/** The retry policy of docs/spec/idprov-coap-v1.md §4 from the configuration. */
export function policySettings(cfg: ServiceConfig): PolicySettings {
  return {
    pendingInitialS: cfg.pendingRetryInitial,
    pendingStepS: cfg.pendingRetryStep,
    pendingMaxS: cfg.pendingRetryMax,
    rejectedRetryS: cfg.rejectedRetry,
  };
}

/** The security monitor's settings, rate limits and caps from the configuration. */
export function monitorSettings(cfg: ServiceConfig): MonitorSettings {
  return {
    addressRate: cfg.rateLimitAddress,
    addressBurst: cfg.rateBurstAddress,
    deviceRate: cfg.rateLimitDevice,
    deviceBurst: cfg.rateBurstDevice,
    maxTracked: cfg.rateLimitMaxKeys,
    manyIds: cfg.manyIdsThreshold,
    manyIdsWindowS: cfg.manyIdsWindow,
    maxAddresses: cfg.monitorMaxAddresses,
    holdFlagged: cfg.holdFlagged,
    maxFlags: cfg.maxFlags,
    maxPending: cfg.maxPending,
    pendingExpiryS: cfg.pendingExpiry,
    eventRetentionS: cfg.eventRetention * DAY_S,
    maxEvents: cfg.maxEvents,
  };
}

/** Everything the provisioning service is configured with. */
export function serviceSettings(cfg: ServiceConfig): ServiceSettings {
  return {
    issuer: cfg.issuer,
    ...(cfg.audience ? { audience: cfg.audience } : {}),
    ...(cfg.hubUri ? { hubUri: cfg.hubUri } : {}),
    provisionTokenTtl: cfg.provisionTokenTtl,
    tokenTtl: cfg.tokenTtl,
    nonceTtl: cfg.nonceTtl,
    disabledRetryS: cfg.disabledRetry,
    maxUsedNonces: cfg.maxUsedNonces,
    maxUsedNoncesUnvouched: cfg.maxUsedNoncesUnvouched,
    policy: policySettings(cfg),
    monitor: monitorSettings(cfg),
  };
}
