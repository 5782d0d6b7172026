// Worker entry: load the TypeScript sources through tsx (as bin/idprov.js does), then run the loop.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
