/** The settings' defaults, for tests that compare README prose with them. */
import { loadConfig } from '../../src/config.ts';

/** Every setting at its default (no file, no environment, no flags). */
export const SETTINGS_DEFAULTS = loadConfig({ env: {} });
