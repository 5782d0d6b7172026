/**
 * The crypto floors the benchmark's ratios are measured against, run pinned to the server's core in
 * the same run: Ed25519 verify and sign with node:crypto KeyObjects (the KeyObjects made once, as
 * the server caches them), and for DTLS the P-256 ECDH (key generation + shared secret) and ECDSA
 * sign of an ECDHE_ECDSA handshake. Costs are CPU time (process.cpuUsage), not wall time, so other
 * load on the shared machine inflates them less; each is the median of several rounds.
 *
 *   npx tsx tools/bench/floor.ts [--ms 1000]   → JSON on stdout
 */
import { createECDH, createHash, generateKeyPairSync, sign, verify } from 'node:crypto';

const i = process.argv.indexOf('--ms');
const budgetMs = i > 0 ? Number(process.argv[i + 1]) : 1000;

/** CPU µs per call of `fn`, median of 5 rounds of about budget/5/ops-kinds each. */
function measure(fn: () => void, roundMs: number): number {
  for (let k = 0; k < 50; k++) fn(); // warm-up
  const rounds: number[] = [];
  for (let r = 0; r < 5; r++) {
    let n = 0;
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    while (performance.now() - w0 < roundMs) {
      for (let k = 0; k < 20; k++) fn();
      n += 20;
    }
    const c = process.cpuUsage(c0);
    rounds.push((c.user + c.system) / n);
  }
  rounds.sort((a, b) => a - b);
  return rounds[2]!;
}

const roundMs = budgetMs / 5 / 4;
const ed = generateKeyPairSync('ed25519');
// A message of the size the server verifies: Sig_structure of a ~100-byte request body.
const msg = createHash('sha512').update('m').digest();
const msg2 = Buffer.concat([msg, msg]);
const sig = sign(null, msg2, ed.privateKey);
const edVerifyUs = measure(() => {
  if (!verify(null, msg2, ed.publicKey, sig)) throw new Error('verify failed');
}, roundMs);
const edSignUs = measure(() => sign(null, msg2, ed.privateKey), roundMs);

const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const peer = createECDH('prime256v1');
peer.generateKeys();
const peerPub = peer.getPublicKey();
const ecdhUs = measure(() => {
  const e = createECDH('prime256v1');
  e.generateKeys();
  e.computeSecret(peerPub);
}, roundMs);
const ecdsaSignUs = measure(() => sign('sha256', msg2, ec.privateKey), roundMs);

const r = (v: number): number => Math.round(v * 10) / 10;
process.stdout.write(
  `${JSON.stringify({
    edVerifyUs: r(edVerifyUs),
    edSignUs: r(edSignUs),
    /** One provisioning: one verify (the device's request) + one sign (the CWT). */
    provisionUs: r(edVerifyUs + edSignUs),
    /** One refresh: two verifies (the presented token, the device's request) + one sign. */
    refreshUs: r(2 * edVerifyUs + edSignUs),
    ecdhUs: r(ecdhUs),
    ecdsaSignUs: r(ecdsaSignUs),
    /** One ECDHE_ECDSA handshake: ECDH key generation + shared secret + one ECDSA signature. */
    ecdheHandshakeUs: r(ecdhUs + ecdsaSignUs),
  })}\n`,
);
