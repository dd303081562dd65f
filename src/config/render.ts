/**
 * The complete, commented default config, built from {@linkcode SCHEMA}: what
 * `vyoma default-config` prints and `config.example.yaml` holds.
 *
 * @module
 */

import { DEFAULT_CONFIG, type FieldSchema, type FieldsSchema, type ListSchema, SCHEMA } from "./schema.ts";

const HEADER = [
  "Vyoma MQTT broker configuration, as printed by `vyoma default-config`.",
  "Every option is shown with its default value; an option left out of the file takes that default,",
  "so a config file needs only the options it changes.",
];

const INDENT = "  ";

/**
 * Returns every section and option in schema order, each under a comment
 * saying what it does, with its default value. Parsing the result gives
 * {@linkcode DEFAULT_CONFIG}.
 */
export function renderDefaultConfig(): string {
  const lines = HEADER.map((line) => `# ${line}`);
  const config = DEFAULT_CONFIG as unknown as Record<string, unknown>;
  for (const [name, field] of Object.entries(SCHEMA.fields)) {
    // A blank line between top-level sections; none inside them, where every option has its comment.
    lines.push("", ...renderField(name, field, config[name], ""));
  }
  return lines.join("\n") + "\n";
}

function renderFields(fields: FieldsSchema, values: Record<string, unknown>, indent: string): string[] {
  return Object.entries(fields).flatMap(([name, field]) => renderField(name, field, values[name], indent));
}

function renderField(name: string, schema: FieldSchema, value: unknown, indent: string): string[] {
  const lines = schema.doc === "" ? [] : [`${indent}# ${schema.doc}`];
  switch (schema.kind) {
    case "section":
      lines.push(`${indent}${name}:`);
      lines.push(...renderFields(schema.fields, value as Record<string, unknown>, indent + INDENT));
      break;
    case "list":
      lines.push(`${indent}${name}:`);
      for (const item of value as Record<string, unknown>[]) {
        lines.push(...renderItem(schema, item, indent + INDENT));
      }
      break;
    case "strings":
      lines.push(`${indent}${name}: [${(value as string[]).map(scalar).join(", ")}]`);
      break;
    default:
      lines.push(`${indent}${name}: ${scalar(value)}`);
  }
  return lines;
}

function renderItem(schema: ListSchema, item: Record<string, unknown>, indent: string): string[] {
  const type = item.type as string;
  const kinds = Object.entries(schema.variants).map(([kind, variant]) => `${kind} (${variant.doc})`);
  return [
    `${indent}# ${schema.typeDoc}: ${kinds.join(", ")}.`,
    `${indent}- type: ${scalar(type)}`,
    // The item's other fields line up under `type`, past the "- ".
    ...renderFields(schema.variants[type].fields, item, indent + INDENT),
  ];
}

/** What YAML 1.2's core schema reads as null, a boolean, an integer or a float rather than a string. */
const NOT_A_STRING =
  /^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE|[-+]?\d+|0o[0-7]+|0x[\da-fA-F]+|[-+]?(?:\.\d+|\d+(?:\.\d*)?)(?:[eE][-+]?\d+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;

function scalar(value: unknown): string {
  if (typeof value !== "string") return String(value);
  // Plain when YAML reads it back as the same string; otherwise a JSON string, which is valid YAML.
  // Not checked with the yaml package, which would need env access (see load.ts) just to render.
  return /^[\w./-]+$/.test(value) && !NOT_A_STRING.test(value) ? value : JSON.stringify(value);
}
