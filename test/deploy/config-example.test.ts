/** deploy/idprov.example.json is a config file the real loader accepts, as the systemd unit uses it. */
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/config.ts';

const FILE = new URL('../../deploy/idprov.example.json', import.meta.url).pathname;

describe('the sample config file deploy/idprov.example.json', () => {
  it('loads through the config loader with no problem', () => {
    const cfg = loadConfig({ file: FILE, env: {} });
    assert.equal(cfg.dataDir, '/var/lib/idprov', 'the StateDirectory of deploy/idprov.service');
    assert.equal(cfg.adminBind, '127.0.0.1', 'the sidecar stays on loopback');
    assert.equal(cfg.logFormat, 'json', 'journald gets JSON lines');
  });

  it('is overridden by the environment, as the settings table says', () => {
    assert.equal(loadConfig({ file: FILE, env: { IDPROV_LOG_FORMAT: 'pretty' } }).logFormat, 'pretty');
  });
});
