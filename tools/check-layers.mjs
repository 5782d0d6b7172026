#!/usr/bin/env node
// Layer check (docs/architecture.md "Layers"): an import graph of src/ built with the TypeScript
// compiler API, checked against an explicit list of allowed edges for every room of src/.
//
// What it reads, per file (AST, not lines): static `import`, `export … from`, `import x = require()`,
// dynamic `import()`, `require()` (and functions made by `createRequire`). `import type` and
// `export type … from` are type-only edges: erased at run time, so they count for the direction of the
// layers (no upward import, not even of a type) but not for purity or for picking an adapter.
// Under `verbatimModuleSyntax` an `import { type A }` still loads its module, so it is a value edge.
//
// What it checks:
//   1. every file under src/ is covered by a rule (a folder rule covers its subfolders; the longest
//      matching path wins);
//   2. every edge to another room (or to a package / node: builtin) is in the importer's allow list;
//   3. no edge goes up: a room may not import a room of a higher rank (type-only edges included);
//   4. concrete adapters (store engines, sockets, DTLS) are imported only by the composition root
//      (src/server.ts, src/cli/) and by the rooms named in the adapter's `usedBy`;
//   5. pure rooms reach no I/O and no clock through ANY path: the value edges are followed
//      transitively, through other rooms, to packages and node: builtins outside PURE_EXTERNALS and to
//      files that read the clock;
//   6. pure rooms read no clock, aliases included: Date.now, Date.prototype.x, `new Date()` with no
//      argument, any other use of `Date` as a value (`const d = Date`, `const { now } = Date`,
//      `f(Date)`), performance, process, timers, through `globalThis.` too;
//   7. a dynamic import or require whose specifier is not a string literal cannot be checked: refused.
//
// Usage: node tools/check-layers.mjs [--root DIR] [--graph]   (exit 1 and a list on any violation)
// As a module: `checkLayers(rootDir)` returns { problems: string[], graph }.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const COMPOSITION = ['server', 'cli'];

// Packages and builtins that are computation, not I/O: a pure room may reach these and nothing else
// outside the pure rooms.
export const PURE_EXTERNALS = ['node:crypto', 'node:buffer', 'node:util', 'cbor-x', 'tweetnacl', 'lru-cache'];

/**
 * The rooms, lowest rank first. `paths` are relative to the root, without extension: 'src/net' covers
 * src/net.ts and everything under src/net/; a trailing '*' matches any name with that prefix
 * ('src/log*' covers log.ts and log-pretty.ts). `allow`: rooms and externals this room may import
 * (an external 'node:fs' also covers 'node:fs/promises'; '*' is everything). `types`: rooms it may
 * name types of, in addition. `pure`: no I/O, no clock, transitively. `clockFree`: no clock read in
 * the room's own files (the time is injected), though it may reach I/O through seams. `adapter`: a concrete
 * implementation chosen by the composition root; `usedBy` may import it too.
 */
export const ROOMS = [
  // rank 0: leaves every layer may use
  { room: 'net', rank: 0, paths: ['src/net'], pure: true, allow: [], why: 'the address normaliser is a pure leaf: no I/O, no clock, no imports, so every layer may use it' },
  { room: 'errors', rank: 0, paths: ['src/errors', 'src/domain/errors'], pure: true, allow: [], why: 'the error vocabulary is a pure leaf every layer may use' },
  { room: 'domain', rank: 0, paths: ['src/domain'], pure: true, allow: ['errors', 'net'], why: 'domain types and values are a pure leaf: no I/O, no clock' },
  { room: 'version', rank: 0, paths: ['src/version'], allow: ['node:fs', 'node:url', 'node:path'], why: 'the version reads package.json and nothing else' },
  { room: 'lib', rank: 0, paths: ['src/bounded-lru', 'src/lib'], pure: true, allow: ['lib', 'lru-cache'], why: 'small shared data structures (the one bounded LRU): pure leaves, no I/O, no clock (no TTL), so every layer may use them' },
  { room: 'log', rank: 0, paths: ['src/log*'], allow: ['log', 'pino', 'node:tty', 'node:util', 'node:os', 'node:stream'], why: 'logging sits under every layer, so it imports none of them' },
  // rank 1: codecs
  { room: 'protocol-coap', rank: 1, paths: ['src/protocol/coap-codes', 'src/protocol/content-formats'], pure: true, allow: ['errors', 'net'], why: 'the CoAP vocabulary (response codes, content formats): a pure leaf the transport may name without knowing provisioning' },
  { room: 'protocol', rank: 1, paths: ['src/protocol'], pure: true, allow: ['protocol-coap', 'lib', 'domain', 'errors', 'net', 'cbor-x', 'node:crypto', 'node:buffer'], why: 'pure codecs of the wire contract: bytes in, typed values out; no I/O, no clock, no upper layers' },
  { room: 'discovery-pure', rank: 1, paths: ['src/discovery/records', 'src/discovery/probe', 'src/discovery/rogue', 'src/discovery/interfaces'], pure: true, allow: ['discovery-pure', 'net', 'errors'], types: ['multicast-dns'], why: 'pure discovery logic (records, probe, rogue rules, interface choice): no I/O, the clock passed in' },
  // rank 2: decisions and tokens
  { room: 'policy', rank: 2, paths: ['src/policy'], pure: true, allow: ['protocol', 'protocol-coap', 'lib', 'net', 'domain', 'errors', 'node:crypto', 'lru-cache'], why: 'pure decisions as values: no I/O, no clock (the time is an argument), no tokens, no store' },
  { room: 'tokens', rank: 2, paths: ['src/tokens'], pure: true, allow: ['protocol', 'lib', 'domain', 'errors', 'net', 'node:crypto', 'node:buffer', 'tweetnacl', 'lru-cache'], why: 'tokens are computation over keys: no I/O, the clock is an argument' },
  // rank 3: settings and the store seam
  { room: 'config', rank: 3, paths: ['src/config'], allow: ['discovery-pure', 'net', 'errors', 'domain', 'node:fs', 'node:net', 'node:path', 'node:os'], why: 'one table of settings; it reads files and the environment, so only the composition root imports it' },
  { room: 'store-seam', rank: 3, paths: ['src/store/store', 'src/store/paging'], allow: ['domain', 'errors'], types: ['policy', 'protocol'], why: 'the Store seam speaks domain types only (with its keyset paging rules)' },
  // rank 4: store adapters and the use cases
  { room: 'store', rank: 4, paths: ['src/store'], allow: ['store', 'store-seam', 'lib', 'domain', 'errors', 'log', 'net', 'node:util', 'node:crypto', 'node:fs', 'node:path', 'node:os', 'node:events', 'node:readline', 'node:stream', 'node:string_decoder', 'node:timers'], why: 'store helpers (copy, contract) work through the Store seam; engines live in their own subfolders' },
  { room: 'store-sqlite', rank: 4, adapter: true, usedBy: [], paths: ['src/store/sqlite', 'src/store/backup'], allow: ['store-sqlite', 'store-seam', 'store', 'lib', 'domain', 'errors', 'log', 'net', 'sqlite3', 'node:fs', 'node:path', 'node:crypto', 'node:util', 'node:events', 'node:worker_threads', 'node:timers', 'lru-cache', 'node:os', 'node:readline', 'node:stream', 'node:string_decoder'], why: 'the SQLite engine implements the Store seam (with the shared store helpers) and knows no other engine' },
  { room: 'store-postgres', rank: 4, adapter: true, usedBy: [], paths: ['src/store/postgres'], allow: ['store-postgres', 'store-seam', 'store', 'lib', 'domain', 'errors', 'log', 'net', 'pg', 'node:crypto', 'node:util', 'node:events', 'node:os', 'node:timers', 'lru-cache', 'node:readline', 'node:stream', 'node:string_decoder'], why: 'the PostgreSQL engine implements the Store seam (with the shared store helpers) and knows no other engine' },
  { room: 'store-memory', rank: 4, adapter: true, usedBy: [], paths: ['src/store/memory'], allow: ['store-memory', 'store-seam', 'store', 'lib', 'domain', 'errors', 'log', 'net', 'node:crypto', 'node:util', 'node:events', 'lru-cache', 'node:os', 'node:readline', 'node:stream', 'node:string_decoder', 'node:timers'], why: 'the in-memory engine implements the Store seam (with the shared store helpers) and knows no other engine' },
  { room: 'service', rank: 4, paths: ['src/service'], clockFree: true, allow: ['policy', 'protocol', 'protocol-coap', 'lib', 'net', 'tokens', 'store-seam', 'domain', 'errors', 'log', 'node:crypto', 'node:events', 'node:string_decoder', 'node:timers/promises', 'jose', 'lru-cache'], types: ['config', 'node:stream'], why: 'the use cases sequence side effects through seams only: the Store seam, no engine, no transport, no I/O of their own' },
  // rank 4: datagrams (a sibling of the service: neither knows the other)
  { room: 'transport', rank: 4, paths: ['src/transport'], allow: ['transport', 'protocol-coap', 'lib', 'net', 'log', 'node:dgram', 'node:net', 'node:dns', 'node:crypto', 'node:fs', 'node:buffer', 'node:perf_hooks', 'node:events', 'node:timers', 'lru-cache'], why: 'the transport moves datagrams and knows nothing of provisioning' },
  { room: 'transport-udp', rank: 4, adapter: true, usedBy: ['transport-dtls', 'discovery'], paths: ['src/transport/coap/udp', 'src/transport/udp'], allow: ['transport', 'net', 'log', 'node:dgram', 'node:net', 'node:dns', 'node:os', 'node:events', 'node:buffer'], why: 'the UDP socket is an adapter: the composition root binds it (DTLS runs over it, discovery adds group sockets)' },
  { room: 'transport-dtls', rank: 4, adapter: true, usedBy: [], paths: ['src/transport/dtls/server'], allow: ['transport', 'transport-udp', 'lib', 'net', 'log', 'node:crypto', 'node:fs', 'node:buffer', 'node:events', 'node:timers', 'lru-cache'], why: 'the DTLS server wraps a UDP socket; the composition root chooses it' },
  // rank 5: edges over the service and the transport
  { room: 'device-api', rank: 5, paths: ['src/device-api'], allow: ['device-api', 'service', 'protocol', 'protocol-coap', 'lib', 'policy', 'transport', 'net', 'domain', 'errors', 'log', 'node:crypto', 'node:buffer'], types: ['tokens', 'store-seam', 'config'], why: 'the /idprov/* resources map CoAP to the use cases: no store, no engine, no sidecar' },
  { room: 'discovery', rank: 5, paths: ['src/discovery'], allow: ['discovery', 'discovery-pure', 'transport', 'lib', 'net', 'log', 'errors', 'multicast-dns', 'node:dgram', 'node:os', 'node:events', 'node:timers'], why: 'discovery advertises and watches the network; it knows the transport, not provisioning' },
  { room: 'admin', rank: 5, paths: ['src/admin'], allow: ['admin', 'service', 'protocol', 'protocol-coap', 'lib', 'net', 'domain', 'errors', 'log', 'fastify', '@fastify', 'fastify-plugin', 'jose', 'prom-client', 'node:crypto', 'node:fs', 'node:path', 'node:stream', 'node:events', 'node:readline', 'node:string_decoder', 'node:timers', 'node:url', 'node:buffer', 'node:util'], types: ['store-seam', 'tokens', 'policy'], why: 'the sidecar is a thin HTTP layer over the service: every read through the service, no store, no tokens' },
  // rank 6: the composition root
  { room: 'server', rank: 6, paths: ['src/server'], allow: ['*'], why: 'the composition root: it chooses the adapters and wires every room' },
  { room: 'cli', rank: 7, paths: ['src/cli'], allow: ['*'], why: 'the idprov command starts the composition root; nothing imports it' },
];

/**
 * Narrow, documented exceptions: an edge from a file (or folder) to a room that its room's rule does
 * not allow, kept until the issue named in `why` removes it. A stale exception (matching no edge) is
 * reported as a warning, not a failure, so a merge that removes the edge does not break the check.
 */
export const EXCEPTIONS = [
];

const CLOCK_TIMERS = new Set(['setTimeout', 'setInterval', 'setImmediate', 'queueMicrotask']);
const GLOBAL_OBJECTS = new Set(['globalThis', 'global', 'window', 'self']);
const BUILTINS = new Set(builtinModules.filter((m) => !m.startsWith('_')));

function normaliseExternal(spec) {
  if (spec.startsWith('node:')) return spec;
  const base = spec.split('/')[0];
  if (BUILTINS.has(spec) || BUILTINS.has(base)) return `node:${spec}`;
  return spec;
}

function* walk(dir) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names.sort()) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (/\.(ts|mts|cts|js|mjs|cjs)$/.test(n) && !/\.d\.[mc]?ts$/.test(n)) yield p;
  }
}

const stem = (rel) => rel.replace(/\.(ts|mts|cts|js|mjs|cjs)$/, '');

function matchLength(pattern, relStem) {
  if (pattern.endsWith('*')) {
    const pre = pattern.slice(0, -1);
    return relStem.startsWith(pre) ? pre.length : -1;
  }
  return relStem === pattern || relStem.startsWith(`${pattern}/`) ? pattern.length : -1;
}

export function roomOf(rel, rooms = ROOMS) {
  const s = stem(rel.split(sep).join('/'));
  let best;
  let bestLen = -1;
  for (const r of rooms)
    for (const p of r.paths) {
      const l = matchLength(p, s);
      if (l > bestLen) {
        best = r;
        bestLen = l;
      }
    }
  return best;
}

function resolveRelative(fromAbs, spec) {
  const base = resolve(dirname(fromAbs), spec);
  const cands = [base];
  const m = /\.(m|c)?js$/.exec(base);
  if (m) cands.push(base.replace(/\.(m|c)?js$/, `.${m[1] ?? ''}ts`));
  cands.push(`${base}.ts`, `${base}.mts`, `${base}.js`, join(base, 'index.ts'), join(base, 'index.js'));
  for (const c of cands) if (existsSync(c) && statSync(c).isFile()) return c;
  return undefined;
}

const isStringLike = (n) => n && (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n));

/** The global a node names: `Date`, `globalThis.Date`, `globalThis['Date']` → 'Date'. */
function globalName(node) {
  if (ts.isIdentifier(node)) return node.text;
  if (ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.expression) && GLOBAL_OBJECTS.has(node.expression.text)) return node.name.text;
  if (ts.isElementAccessExpression(node) && ts.isIdentifier(node.expression) && GLOBAL_OBJECTS.has(node.expression.text) && isStringLike(node.argumentExpression)) return node.argumentExpression.text;
  return undefined;
}

/** True when an identifier is a value reference (not a type, a property name or a declaration name). */
function isValueReference(id) {
  const p = id.parent;
  if (!p) return false;
  if (ts.isPropertyAccessExpression(p) && p.name === id) return false;
  if (ts.isQualifiedName(p) || ts.isTypeReferenceNode(p) || ts.isTypeQueryNode(p) || ts.isExpressionWithTypeArguments(p)) return false;
  if ((ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p) || ts.isPropertySignature(p) || ts.isMethodDeclaration(p) || ts.isMethodSignature(p) || ts.isGetAccessor(p) || ts.isSetAccessor(p) || ts.isEnumMember(p)) && p.name === id) return false;
  if ((ts.isVariableDeclaration(p) || ts.isParameter(p) || ts.isFunctionDeclaration(p) || ts.isClassDeclaration(p) || ts.isInterfaceDeclaration(p) || ts.isTypeAliasDeclaration(p) || ts.isBindingElement(p)) && p.name === id) return false;
  if (ts.isBindingElement(p) && p.propertyName === id) return false;
  if (ts.isImportSpecifier(p) || ts.isExportSpecifier(p) || ts.isImportClause(p) || ts.isNamespaceImport(p) || ts.isLabeledStatement(p)) return false;
  if (ts.isBreakOrContinueStatement(p)) return false;
  // inside a type (e.g. `x: typeof Date`)
  for (let q = p; q; q = q.parent) if (ts.isTypeNode(q) && !ts.isExpressionWithTypeArguments(q)) return false;
  return true;
}

/** Clock reads in a file, as [{ line, what }]. */
function clockUses(sf) {
  const uses = [];
  const at = (n, what) => uses.push({ line: sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1, what });
  const visit = (n) => {
    const g = (ts.isIdentifier(n) && isValueReference(n)) || ts.isPropertyAccessExpression(n) || ts.isElementAccessExpression(n) ? globalName(n) : undefined;
    // a `globalThis.X` node is handled at the access; skip its inner `globalThis` identifier
    if (g && !(ts.isIdentifier(n) && GLOBAL_OBJECTS.has(g))) {
      const p = n.parent;
      const accessed = p && (ts.isPropertyAccessExpression(p) || ts.isElementAccessExpression(p)) && p.expression === n;
      const member = accessed ? (ts.isPropertyAccessExpression(p) ? p.name.text : isStringLike(p.argumentExpression) ? p.argumentExpression.text : '[computed]') : undefined;
      if (g === 'Date') {
        if (ts.isNewExpression(p) && p.expression === n) {
          if (!p.arguments || p.arguments.length === 0) at(n, 'new Date() without an argument reads the clock');
        } else if (accessed) {
          if (member !== 'UTC' && member !== 'parse') at(n, `Date.${member} reads the clock or escapes the check`);
        } else if (ts.isBinaryExpression(p) && p.operatorToken.kind === ts.SyntaxKind.InstanceOfKeyword && p.right === n) {
          // `x instanceof Date` is harmless
        } else if (!(ts.isIdentifier(n) && !isValueReference(n))) {
          at(n, 'Date used as a value (an alias such as `const d = Date` or `const { now } = Date` reaches Date.now)');
        }
      } else if (g === 'performance') at(n, 'performance reads the clock');
      else if (g === 'process') at(n, `process${member ? `.${member}` : ''} is the clock, the environment or I/O`);
      else if (CLOCK_TIMERS.has(g)) at(n, `${g} is a timer (a clock)`);
      else if (g === 'fetch') at(n, 'fetch is I/O');
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return uses;
}

/** The imports of a file: [{ spec, line, typeOnly, kind, computed }] */
function importsOf(sf) {
  const out = [];
  const requireNames = new Set(['require']);
  const line = (n) => sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
  const visit = (n) => {
    if (ts.isImportDeclaration(n) && isStringLike(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, line: line(n), typeOnly: !!n.importClause?.isTypeOnly, kind: 'import' });
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier && isStringLike(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, line: line(n), typeOnly: n.isTypeOnly, kind: 'export from' });
    } else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference)) {
      const e = n.moduleReference.expression;
      if (isStringLike(e)) out.push({ spec: e.text, line: line(n), typeOnly: n.isTypeOnly, kind: 'import = require' });
    } else if (ts.isImportTypeNode(n)) {
      // `typeof import('x')` in a type: erased; counted as a type-only edge
      const a = n.argument;
      if (ts.isLiteralTypeNode(a) && isStringLike(a.literal)) out.push({ spec: a.literal.text, line: line(n), typeOnly: true, kind: 'import type' });
    } else if (ts.isCallExpression(n)) {
      const callee = n.expression;
      const isDyn = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isReq = ts.isIdentifier(callee) && requireNames.has(callee.text);
      if (isDyn || isReq) {
        const a = n.arguments[0];
        if (isStringLike(a)) out.push({ spec: a.text, line: line(n), typeOnly: false, kind: isDyn ? 'import()' : 'require' });
        else out.push({ spec: undefined, line: line(n), typeOnly: false, kind: isDyn ? 'import()' : 'require', computed: true });
      }
    }
    // `const req = createRequire(import.meta.url)` makes `req` a require
    if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && n.initializer && ts.isCallExpression(n.initializer)) {
      const c = n.initializer.expression;
      const name = ts.isIdentifier(c) ? c.text : ts.isPropertyAccessExpression(c) ? c.name.text : '';
      if (name === 'createRequire') requireNames.add(n.name.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

function allows(list, target) {
  return list.some((a) => a === '*' || a === target || target.startsWith(`${a}/`));
}

/** Build the graph and check it. `root` holds src/. */
export function checkLayers(root, { rooms = ROOMS, exceptions = EXCEPTIONS } = {}) {
  const problems = [];
  const warnings = [];
  const byName = new Map(rooms.map((r) => [r.room, r]));
  const srcDir = join(root, 'src');
  const nodes = new Map(); // rel → { rel, room, edges: [{ to, toRoom, line, typeOnly, kind }], clock }
  const rel = (abs) => relative(root, abs).split(sep).join('/');

  for (const abs of walk(srcDir)) {
    const r = rel(abs);
    const text = readFileSync(abs, 'utf8');
    const kind = /\.[mc]?js$/.test(abs) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
    const sf = ts.createSourceFile(abs, text, ts.ScriptTarget.ES2022, true, kind);
    const room = roomOf(r, rooms);
    const edges = [];
    for (const im of importsOf(sf)) {
      if (im.computed) {
        problems.push(`${r}:${im.line}: ${im.kind} with a computed specifier cannot be checked: name the module as a string literal`);
        continue;
      }
      if (im.spec.startsWith('.') || im.spec.startsWith('/')) {
        const target = resolveRelative(abs, im.spec);
        if (!target) {
          problems.push(`${r}:${im.line}: cannot resolve ${im.kind} '${im.spec}'`);
          continue;
        }
        const tr = rel(target);
        if (!tr.startsWith('src/')) {
          problems.push(`${r}:${im.line}: imports ${tr} from outside src/: the product may not depend on tests or tools`);
          continue;
        }
        edges.push({ to: tr, toRoom: roomOf(tr, rooms)?.room, line: im.line, typeOnly: im.typeOnly, kind: im.kind });
      } else {
        const ext = normaliseExternal(im.spec);
        edges.push({ to: ext, toRoom: undefined, external: true, line: im.line, typeOnly: im.typeOnly, kind: im.kind });
      }
    }
    nodes.set(r, { rel: r, room, edges, clock: clockUses(sf) });
  }

  const usedExceptions = new Set();
  const excepted = (from, toRoom) => {
    const i = exceptions.findIndex((e) => (from === e.from || from.startsWith(`${e.from.replace(/\/$/, '')}/`)) && e.to === toRoom);
    if (i >= 0) usedExceptions.add(i);
    return i >= 0;
  };

  for (const n of nodes.values()) {
    if (!n.room) {
      problems.push(`${n.rel}: no layer rule covers this file: every room of src/ needs one (add it to ROOMS in tools/check-layers.mjs and to docs/architecture.md "Layers")`);
      continue;
    }
    const me = n.room;
    for (const e of n.edges) {
      const where = `${n.rel}:${e.line}`;
      const what = `${e.typeOnly ? 'type-only ' : ''}${e.kind}`;
      if (e.external) {
        const ok = allows(me.allow, e.to) || (e.typeOnly && allows(me.types ?? [], e.to));
        if (!ok) problems.push(`${where}: ${me.room} may not import ${e.to} (${what}): ${me.why}`);
        continue;
      }
      const target = e.toRoom ? byName.get(e.toRoom) : undefined;
      if (!target) continue; // reported as "no rule" at the target
      if (target.room === me.room) continue;
      if (target.rank > me.rank) problems.push(`${where}: upward import: ${me.room} (rank ${me.rank}) imports ${target.room} (rank ${target.rank}, ${e.to}) (${what}): a layer never imports one above it`);
      if (target.adapter && !e.typeOnly && !COMPOSITION.includes(me.room) && !(target.usedBy ?? []).includes(me.room))
        problems.push(`${where}: adapter chosen below the composition root: ${me.room} imports the concrete ${target.room} (${e.to}): adapters are chosen in src/server.ts (${target.why})`);
      const ok = allows(me.allow, target.room) || (e.typeOnly && allows(me.types ?? [], target.room)) || (target.adapter && (target.usedBy ?? []).includes(me.room));
      if (!ok && !excepted(n.rel, target.room)) problems.push(`${where}: ${me.room} may not import ${target.room} (${e.to}, ${what}): ${me.why}`);
    }
    if (me.pure || me.clockFree) for (const c of n.clock) problems.push(`${n.rel}:${c.line}: clock access in ${me.pure ? 'the pure room' : 'the clock-free room'} ${me.room}: ${c.what}: ${me.why}`);
  }

  // Purity, transitively: from each file of a pure room, follow value edges anywhere.
  for (const n of nodes.values()) {
    if (!n.room?.pure) continue;
    const seen = new Map([[n.rel, [n.rel]]]);
    const queue = [n.rel];
    const reported = new Set();
    while (queue.length) {
      const cur = queue.shift();
      const path = seen.get(cur);
      const cn = nodes.get(cur);
      if (!cn) continue;
      if (cur !== n.rel && cn.clock.length && !cn.room?.pure) {
        const c = cn.clock[0];
        const key = `clock:${cur}`;
        if (!reported.has(key)) {
          reported.add(key);
          problems.push(`${n.rel}: the pure room ${n.room.room} reaches the clock through ${path.join(' → ')} (${cur}:${c.line}: ${c.what}): ${n.room.why}`);
        }
      }
      for (const e of cn.edges) {
        if (e.typeOnly) continue;
        if (e.external) {
          if (PURE_EXTERNALS.includes(e.to) || reported.has(e.to)) continue;
          reported.add(e.to);
          problems.push(`${n.rel}: the pure room ${n.room.room} reaches I/O (${e.to}) through ${[...path, e.to].join(' → ')}: a pure layer may not reach I/O through any path (${n.room.why})`);
        } else if (!seen.has(e.to)) {
          seen.set(e.to, [...path, e.to]);
          queue.push(e.to);
        }
      }
    }
  }

  exceptions.forEach((e, i) => {
    if (!usedExceptions.has(i)) warnings.push(`stale exception ${e.from} → ${e.to} (${e.why}): the edge is gone, remove the exception`);
  });
  return { problems, warnings, nodes };
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = process.argv.slice(2);
  const ri = args.indexOf('--root');
  const root = ri >= 0 ? resolve(args[ri + 1]) : fileURLToPath(new URL('..', import.meta.url));
  const { problems, warnings, nodes } = checkLayers(root);
  if (args.includes('--graph'))
    for (const n of nodes.values()) console.log(`${n.rel} [${n.room?.room ?? '?'}]\n${n.edges.map((e) => `  ${e.typeOnly ? '(type) ' : ''}${e.to}${e.toRoom ? ` [${e.toRoom}]` : ''}`).join('\n')}`);
  for (const w of warnings) console.error(`layer check: warning: ${w}`);
  if (problems.length) {
    console.error(`layer check: ${problems.length} violation(s)\n${problems.join('\n')}`);
    process.exit(1);
  }
  console.log(`layer check: ok (${nodes.size} files, ${[...nodes.values()].reduce((a, n) => a + n.edges.length, 0)} imports, ${ROOMS.length} rooms)`);
}
