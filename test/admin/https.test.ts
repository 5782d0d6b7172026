import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/log.ts';
import { startServer } from '../../src/server.ts';
import { tempDir } from '../support/temp-dir.ts';

function get(port: number, path: string, ca: Buffer, token?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, ca, servername: 'localhost', headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the admin sidecar over HTTPS', function () {
  this.timeout(30_000);
  it('serves HTTPS with the configured certificate and still requires a bearer token', async () => {
    const t = tempDir();
    const cert = join(t.dir, 'admin.crt');
    const key = join(t.dir, 'admin.key');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const server = await startServer(
      loadConfig({ env: {}, flags: { dataDir: join(t.dir, 'data'), coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false, adminCert: cert, adminKey: key } }),
      silentLogger,
    );
    try {
      const ca = readFileSync(cert);
      const health = await get(server.adminPort, '/api/v1/health', ca);
      assert.equal(health.status, 200);
      assert.equal(JSON.parse(health.body).status, 'ok');
      assert.equal((await get(server.adminPort, '/api/v1/devices', ca)).status, 401);
      const token = readFileSync(server.adminTokenFile, 'utf8').trim();
      assert.equal((await get(server.adminPort, '/api/v1/devices', ca, token)).status, 200);
    } finally {
      await server.close();
      t.cleanup();
    }
  });
});
