/**
 * Admin sidecar authentication (issue #3): the bearer tokens and roles of src/service/admin-tokens.ts,
 * where minting, the token registry, verification and revocation live (issue 15: the sidecar is a thin
 * layer over the service). Re-exported here for the sidecar, the CLI and the composition root.
 */
export { AdminAuth, ROLES, roleAllows, type Principal, type Role, type TokenState } from '../service/admin-tokens.ts';
