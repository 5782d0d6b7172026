/**
 * In-process A/B of a DTLS handshake's key schedule (src/transport/dtls/crypto.ts of two trees): PSK
 * premaster, extended master secret, key block, both Finished, both record ciphers, one seal and
 * open. CPU time (process.cpuUsage), in alternating batches.
 *   npx tsx tools/bench/ab/ab-keyschedule.ts OLD_TREE NEW_TREE   (PAIRS=60)
 */
const [oldDir, newDir] = process.argv.slice(2);
const O = await import(`${oldDir}/src/transport/dtls/crypto.ts`);
const N = await import(`${newDir}/src/transport/dtls/crypto.ts`);
const cr = Buffer.alloc(32, 1), sr = Buffer.alloc(32, 2), sh = Buffer.alloc(32, 3), psk = Buffer.from('secretsecret12');
function run(M: any): void {
  const pre = M.pskPreMaster(psk);
  const ms = M.masterSecret(pre, cr, sr, sh);
  const mk = M.PrfKey ? new M.PrfKey(ms) : ms;
  const kb = M.keyBlock(mk, cr, sr);
  M.finishedData(mk, 'client finished', sh); M.finishedData(mk, 'server finished', sh);
  const w = new M.RecordCipher('ccm8', kb.serverKey, kb.serverIv), r = new M.RecordCipher('ccm8', kb.clientKey, kb.clientIv);
  const rec = w.seal(22, 0xfefd, 1, 0, undefined, Buffer.alloc(16)); if (!r) throw 0; w.open(22, 0xfefd, 1, 0, undefined, rec);
}
// equivalence
{ const a = O.prf(Buffer.alloc(80, 9), 'x y', sh, 100), b = N.prf(Buffer.alloc(80, 9), 'x y', sh, 100); if (!a.equals(b)) throw new Error('prf differs'); }
const t = (M: any, n: number): number => { const c = process.cpuUsage(); for (let i = 0; i < n; i++) run(M); const u = process.cpuUsage(c); return (u.user + u.system) / n; };
t(O, 3000); t(N, 3000);
// Many short alternating batches (order swapped each pair), so that the machine's load falls on both alike.
const ro: number[] = [];
let so = 0, sn = 0;
const pairs = Number(process.env['PAIRS'] ?? 60);
for (let r = 0; r < pairs; r++) {
  let a: number, b: number;
  if (r % 2) { a = t(O, 300); b = t(N, 300); } else { b = t(N, 300); a = t(O, 300); }
  so += a; sn += b; ro.push(b / a);
}
ro.sort((x, y) => x - y);
console.log(`${pairs} pairs of 300 key schedules: old ${(so / pairs).toFixed(1)} µs, new ${(sn / pairs).toFixed(1)} µs CPU each; new/old of the means ${(sn / so).toFixed(3)}, median of per-pair ratios ${ro[Math.floor(pairs / 2)]!.toFixed(3)} (quartiles ${ro[Math.floor(pairs / 4)]!.toFixed(3)}–${ro[Math.floor((3 * pairs) / 4)]!.toFixed(3)})`);
