/**
 * Reading and validating a YAML config file against {@linkcode SCHEMA}.
 *
 * Bad input is never thrown: every function returns a {@linkcode ConfigResult},
 * and an error carries what the CLI needs to print one line and exit.
 *
 * @module
 */

import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type YAMLMap } from "yaml";
import {
  type Config,
  defaultOf,
  type FieldSchema,
  type FieldsSchema,
  type Item,
  type LeafSchema,
  type ListSchema,
  SCHEMA,
  type StringListSchema,
  type VariantsSchema,
} from "./schema.ts";

/** What is wrong with a config file, and where. */
export interface ConfigError {
  /** The file as it was named to {@linkcode loadConfigFile} or {@linkcode parseConfig}. */
  file: string;
  /** 1-based line of the offending value, or of the key when the key itself is wrong. */
  line?: number;
  /** Dotted path of the option, e.g. `limits.max_packet_size` or `listeners[1].port`. */
  field?: string;
  /** One line, e.g. `must be an integer between 0 and 65535 (got "abc")`. */
  message: string;
}

/** A validated config with every option present, or the first error in the file. */
export type ConfigResult = { ok: true; config: Config } | { ok: false; error: ConfigError };

/**
 * Formats an error as one line, `FILE:LINE: FIELD: MESSAGE`, leaving out the
 * parts the error does not have.
 *
 * @example
 * ```ts
 * formatConfigError({ file: "cfg.yaml", line: 3, field: "log.level", message: "must be ..." });
 * // "cfg.yaml:3: log.level: must be ..."
 * ```
 */
export function formatConfigError(e: ConfigError): string {
  const where = e.line === undefined ? e.file : `${e.file}:${e.line}`;
  const parts = e.field === undefined ? [where, e.message] : [where, e.field, e.message];
  // The CLI prints exactly one line, whatever a message or file name holds.
  return parts.join(": ").replace(/\s*[\r\n]+\s*/g, " ");
}

/**
 * Validates config text: returns the config with defaults filled in, or the
 * first error in document order. Reads no files; `file` only names the source
 * in the error. Needs env access to `LOG_TOKENS` and `LOG_STREAM`, which the
 * yaml package reads; without it the result is an error saying so.
 */
export function parseConfig(text: string, file: string): ConfigResult {
  const lines = new LineCounter();
  let doc;
  try {
    // Integers arrive as bigint so that `1883.0` and `1e3`, which YAML reads as floats, can be told apart.
    doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, intAsBigInt: true });
  } catch (err) {
    // The yaml package reads LOG_TOKENS and LOG_STREAM (its own debug switches) from process.env
    // while parsing, which Deno refuses without env permission.
    if (!(err instanceof Deno.errors.NotCapable)) throw err;
    const message = "cannot parse config: the yaml package reads env vars LOG_TOKENS and LOG_STREAM, " +
      "and Deno refused env access (run with --allow-env=LOG_TOKENS,LOG_STREAM)";
    return { ok: false, error: { file, message } };
  }
  const lineOf = (offset: number) => lines.linePos(offset).line;

  if (doc.errors.length > 0) {
    const first = doc.errors.reduce((a, b) => b.pos[0] < a.pos[0] ? b : a);
    const message = first.code === "MULTIPLE_DOCS"
      ? "more than one document (---); a config file holds one"
      : first.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    return {
      ok: false,
      error: { file, line: lineOf(first.pos[0]), message: `YAML syntax error: ${message}` },
    };
  }

  const root = doc.contents;
  if (root !== null && !isNull(root) && !isMap(root)) {
    return {
      ok: false,
      error: { file, line: 1, message: `the config must be a mapping of sections (got ${describe(root)})` },
    };
  }
  const read = readField(SCHEMA, root, [], 0);
  if (!read.ok) {
    const { at, path, message } = read.issue;
    const field = path.length === 0 ? undefined : formatPath(path);
    return { ok: false, error: { file, line: lineOf(at), field, message } };
  }
  return { ok: true, config: read.value as Config };
}

/**
 * Reads a config file and validates it with {@linkcode parseConfig}. A file
 * that cannot be read (missing, a directory, not permitted, not UTF-8) is a
 * {@linkcode ConfigError} without a line.
 */
export async function loadConfigFile(path: string): Promise<ConfigResult> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    return { ok: false, error: { file: path, message: `cannot read config: ${readFailure(err)}` } };
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { ok: false, error: { file: path, message: "cannot read config: not UTF-8 text" } };
  }
  return parseConfig(text, path);
}

function readFailure(err: unknown): string {
  if (err instanceof Deno.errors.NotFound) return "no such file";
  if (err instanceof Deno.errors.IsADirectory) return "it is a directory";
  if (err instanceof Deno.errors.NotADirectory) return "a component of the path is not a directory";
  if (err instanceof Deno.errors.NotCapable) {
    return "Deno refused read access (`deno task start` may read only files under the working directory)";
  }
  // Deno's own refusals are NotCapable; PermissionDenied comes from the operating system.
  if (err instanceof Deno.errors.PermissionDenied) {
    return "permission denied (check the file's owner and mode)";
  }
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------
// The walk over the YAML tree. Each step returns the value or the first issue,
// in document order; `at` is a source offset, turned into a line at the end.

type Path = readonly (string | number)[];
interface Issue {
  at: number;
  path: Path;
  message: string;
}
type Read = { ok: true; value: unknown } | { ok: false; issue: Issue };

const fail = (at: number, path: Path, message: string): Read => ({ ok: false, issue: { at, path, message } });

/** `node` is null for an absent value; `at` then locates it (the key's offset). */
function readField(schema: FieldSchema, node: Node | null, path: Path, at: number): Read {
  if (node !== null) at = node.range?.[0] ?? at;
  if (isAlias(node)) return fail(at, path, "YAML aliases are not supported in the config");
  switch (schema.kind) {
    case "section":
      // A section whose options are all commented out is left empty: it means the defaults.
      if (node === null || isNull(node)) return readPairs(schema.fields, null, path);
      if (!isMap(node)) return fail(at, path, `must be a mapping of options (got ${describe(node)})`);
      return readPairs(schema.fields, node, path);
    case "list":
      return readList(schema, node, path, at);
    case "strings":
      return readStrings(schema, node, path, at);
    default:
      return readLeaf(schema, node, path, at);
  }
}

/** Reads a mapping's keys in order; `handled` are keys the caller has read already. */
function readPairs(fields: FieldsSchema, map: YAMLMap | null, path: Path, handled: string[] = []): Read {
  const values: Record<string, unknown> = {};
  for (const { key, value } of map?.items ?? []) {
    // In a document from parseDocument, keys and values are nodes (or null when absent).
    const keyNode = key as Node | null;
    const at = keyNode?.range?.[0] ?? map?.range?.[0] ?? 0;
    if (isAlias(keyNode)) return fail(at, path, "YAML aliases are not supported in the config");
    const name = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    if (handled.includes(name)) continue;
    // hasOwn, so that keys such as `constructor` are unknown rather than found on Object.prototype.
    if (!Object.hasOwn(fields, name)) {
      const suggestion = closest(name, [...handled, ...Object.keys(fields)]);
      const hint = suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`;
      return fail(at, [...path, name], `unknown key${hint}`);
    }
    const read = readField(fields[name], value as Node | null, [...path, name], at);
    if (!read.ok) return read;
    values[name] = read.value;
  }
  // Rebuilt in schema order, with defaults for what the file leaves out.
  const result: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(fields)) {
    if (!Object.hasOwn(values, name) && field.kind === "string" && field.required) {
      return fail(map?.range?.[0] ?? 0, [...path, name], "is required");
    }
    result[name] = Object.hasOwn(values, name) ? values[name] : defaultOf(field);
  }
  return { ok: true, value: result };
}

function readList(schema: ListSchema, node: Node | null, path: Path, at: number): Read {
  const items = node === null || isNull(node) ? [] : isSeq(node) ? node.items as (Node | null)[] : undefined;
  if (items === undefined) return fail(at, path, `must be a list (got ${describe(node)})`);
  if (items.length === 0) return fail(at, path, "must have at least one entry");

  const values: unknown[] = [];
  const unique = schema.unique;
  const seen = new Map<string, number>();
  for (const [index, item] of items.entries()) {
    const itemPath = [...path, index];
    const read = readItem(schema, item, itemPath, at);
    if (!read.ok) return read;
    // Checked item by item so that a clash is reported before errors in later items.
    // The cast holds because readItem built the value from this list's variants.
    const key = unique?.key(read.value as Item<VariantsSchema>);
    if (unique !== undefined && key !== undefined) {
      const first = seen.get(key);
      if (first !== undefined) {
        const message = `same ${unique.what} as ${formatPath([...path, first])} (${key})`;
        return fail(item?.range?.[0] ?? at, itemPath, message);
      }
      seen.set(key, index);
    }
    values.push(read.value);
  }
  return { ok: true, value: values };
}

function readStrings(schema: StringListSchema, node: Node | null, path: Path, at: number): Read {
  if (!isSeq(node)) return fail(at, path, `must be a list of strings (got ${describe(node)})`);
  const values: string[] = [];
  for (const [index, item] of (node.items as (Node | null)[]).entries()) {
    const itemAt = item?.range?.[0] ?? at;
    const value = isScalar(item) ? item.value : undefined;
    if (typeof value !== "string" || value.trim() === "") {
      return fail(itemAt, [...path, index], `must be a non-empty string (got ${describe(item)})`);
    }
    const wrong = schema.check?.(value);
    if (wrong !== undefined) return fail(itemAt, [...path, index], `${wrong} (got ${describe(item)})`);
    values.push(value);
  }
  return { ok: true, value: values };
}

/**
 * The item's `type` is read first, whatever its position, because it decides
 * which fields the rest of the item may have.
 */
function readItem(schema: ListSchema, node: Node | null, path: Path, at: number): Read {
  at = node?.range?.[0] ?? at;
  if (isAlias(node)) return fail(at, path, "YAML aliases are not supported in the config");
  if (!isMap(node)) return fail(at, path, `must be a mapping of options (got ${describe(node)})`);

  const typePair = node.items.find(({ key }) => isScalar(key) && key.value === "type");
  let type = schema.defaultType;
  if (typePair !== undefined) {
    const typeSchema: LeafSchema = {
      kind: "enum",
      doc: schema.typeDoc,
      values: Object.keys(schema.variants),
      default: schema.defaultType,
    };
    const keyAt = (typePair.key as Node).range?.[0] ?? at;
    const read = readField(typeSchema, typePair.value as Node | null, [...path, "type"], keyAt);
    if (!read.ok) return read;
    type = read.value as string;
  }
  const variant = schema.variants[type];
  const read = readPairs(variant.fields, node, path, ["type"]);
  if (!read.ok) return read;
  // The cast holds because readPairs built the value from this variant's fields.
  const wrong = variant.check?.(read.value as Parameters<NonNullable<typeof variant.check>>[0]);
  if (wrong !== undefined) {
    const pair = node.items.find(({ key }) => isScalar(key) && key.value === wrong.field);
    return fail((pair?.key as Node | undefined)?.range?.[0] ?? at, [...path, wrong.field], wrong.message);
  }
  return { ok: true, value: { type, ...read.value as object } };
}

function readLeaf(schema: LeafSchema, node: Node | null, path: Path, at: number): Read {
  const value = isScalar(node) ? node.value : undefined;
  let ok: boolean;
  switch (schema.kind) {
    case "integer":
      ok = typeof value === "bigint" && value >= BigInt(schema.min) && value <= BigInt(schema.max);
      break;
    case "boolean":
      ok = typeof value === "boolean";
      break;
    case "string":
      ok = typeof value === "string" && (schema.allowEmpty || value.trim() !== "");
      break;
    case "enum":
      ok = typeof value === "string" && schema.values.includes(value);
      break;
  }
  if (!ok) return fail(at, path, `must be ${expected(schema)} (got ${describe(node)})`);
  const wrong = schema.kind === "string" ? schema.check?.(value as string) : undefined;
  if (wrong !== undefined) return fail(at, path, `${wrong} (got ${describe(node)})`);
  return { ok: true, value: typeof value === "bigint" ? Number(value) : value };
}

function expected(schema: LeafSchema): string {
  switch (schema.kind) {
    case "integer":
      return `an integer between ${schema.min} and ${schema.max}`;
    case "boolean":
      return "true or false";
    case "string":
      return schema.allowEmpty ? "a string" : "a non-empty string";
    case "enum":
      return `one of ${schema.values.join(", ")}`;
  }
}

function isNull(node: Node): boolean {
  return isScalar(node) && node.value === null;
}

/** The value as written, short and on one line, for `(got ...)`. */
function describe(node: Node | null): string {
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a list";
  if (!isScalar(node) || node.value === null) return "null";
  if (typeof node.value === "string") {
    const text = node.value.length > 40 ? `${node.value.slice(0, 40)}...` : node.value;
    return JSON.stringify(text);
  }
  // The source shows `1883.0` or `0x10` as written, where the parsed number would not.
  return node.source ?? String(node.value);
}

function formatPath(path: Path): string {
  return path.map((p, i) => typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`).join("");
}

/**
 * The candidate closest to a misspelt key: within two edits, or one for keys
 * under six letters, where two edits turn `cert` into `port`.
 */
function closest(name: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = name.length < 6 ? 2 : 3;
  for (const candidate of candidates) {
    const d = distance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

/** Edit distance counting a swap of adjacent letters as one edit (`pakcet` is one from `packet`). */
function distance(a: string, b: string): number {
  // d[i][j] is the distance between the first i letters of a and the first j of b.
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}
