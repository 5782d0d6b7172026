/**
 * JSON schemas shared by the sidecar's routes (issue 14): fastify validates requests with them and
 * serializes responses through them, and src/admin/openapi.ts turns them into the OpenAPI document.
 * Written in the subset JSON Schema draft-07 (fastify's Ajv) and 2020-12 (OpenAPI 3.1) agree on.
 */
import { ERROR_TABLE } from '../errors.ts';
import { MAX_QUERY_CHARS } from '../service/admin-queries.ts';

/** A JSON schema (an object; the sidecar's own, kept to plain keywords). */
export type Schema = Record<string, unknown>;

/** Names under which {@link named} schemas appear in the OpenAPI document's `components.schemas`. */
export const SCHEMA_NAMES = new Map<object, string>();

/** Register `schema` as a named component of the OpenAPI document (same object, same `$ref`). */
export function named<T extends Schema>(name: string, schema: T): T {
  SCHEMA_NAMES.set(schema, name);
  return schema;
}

export const str = (description?: string, extra: Schema = {}): Schema => ({ type: 'string', ...(description ? { description } : {}), ...extra });
export const int = (description?: string, extra: Schema = {}): Schema => ({ type: 'integer', ...(description ? { description } : {}), ...extra });
export const bool = (description?: string): Schema => ({ type: 'boolean', ...(description ? { description } : {}) });
export const isoTime = (description?: string): Schema => str(description, { format: 'date-time' });

/** An object schema; `required` lists the keys always present. */
export function obj(properties: Record<string, Schema>, required: readonly string[] = [], extra: Schema = {}): Schema {
  return { type: 'object', properties, ...(required.length ? { required: [...required] } : {}), ...extra };
}

/** `{"error": {"code", "message"}}`, every error's body. */
export const ErrorBody = named(
  'Error',
  obj(
    {
      error: obj(
        {
          code: str('stable error code (src/errors.ts)', { enum: Object.keys(ERROR_TABLE) }),
          message: str('for people; may change'),
        },
        ['code', 'message'],
      ),
    },
    ['error'],
    { description: 'An error, with a stable code' },
  ),
);

/** The error responses every route may give. */
export const ERRORS = { '4xx': ErrorBody, '5xx': ErrorBody } as const;

/** No body (204, 304). */
export const NO_BODY = (description: string): Schema => ({ type: 'null', description });

/** `:id` of a record route. */
export const IdParams = obj({ id: str('the record ID, percent-encoded; `~` to give it as the `id` query parameter instead (see "IDs in paths")', { minLength: 1 }) }, ['id']);

/** The `id` query parameter of a record route whose path says `~`. */
export const tildeId = { id: str('the record ID when the path segment is `~` (for the IDs `.` and `..`)', { minLength: 1, maxLength: 256 }) };

/** Query parameters of the list routes. */
export const listQuery = {
  after: str('cursor: the `next` of the previous page', { maxLength: 256 }),
  limit: int('items per page', { minimum: 1, maximum: 1000, default: 100 }),
  q: str('case-insensitive substring of the ID (a prefix included); at most 20,000 rows are looked at per request, so a short page may come with `next`', { maxLength: MAX_QUERY_CHARS }),
};

/** A page of a list: `items`, and `next` when there are more. */
export function pageOf(item: Schema, description: string): Schema {
  return obj({ items: { type: 'array', items: item }, next: str('pass as `after` for the following page; absent on the last page') }, ['items'], { description });
}

/** An optional string field of a request body: absent, null (= absent) or a string. */
export const nstr = (description: string, extra: Schema = {}): Schema => ({ type: ['string', 'null'], description, ...extra });

/**
 * An optional JSON request body (no body at all is fastify's null): an object whose other fields are
 * ignored, as they always were.
 */
export function optBody(properties: Record<string, Schema>, required: readonly string[] = []): Schema {
  return { type: ['object', 'null'], properties, ...(required.length ? { required: [...required] } : {}), additionalProperties: true };
}
