/**
 * The broker's configuration, described once as data.
 *
 * {@linkcode SCHEMA} is the single source for the config's TypeScript types,
 * its defaults, its validation ({@linkcode parseConfig} in `load.ts`) and the
 * commented default file ({@linkcode renderDefaultConfig} in `render.ts`).
 * A new option or listener type is a new entry here and nothing else.
 *
 * @module
 */

import { parseAddressRange } from "../transport/address_range.ts";
import { formatAddress } from "../transport/connection.ts";

/** An integer option, checked against an inclusive range. */
export interface IntegerSchema<T extends number = number> {
  readonly kind: "integer";
  /** One line saying what the option does and its unit; rendered as a comment. */
  readonly doc: string;
  readonly min: number;
  readonly max: number;
  readonly default: T;
}

/** A `true` / `false` option. */
export interface BooleanSchema {
  readonly kind: "boolean";
  /** One line saying what the option does; rendered as a comment. */
  readonly doc: string;
  readonly default: boolean;
}

/** A string option; non-empty unless `allowEmpty`. */
export interface StringSchema {
  readonly kind: "string";
  /** One line saying what the option does; rendered as a comment. */
  readonly doc: string;
  readonly default: string;
  /** The empty string is a meaningful value (usually "off"). */
  readonly allowEmpty?: boolean;
  /** The option must be given: there is no sensible default (a certificate file, say). */
  readonly required?: boolean;
  /** Further rules: returns what is wrong ("must start with /", say), or undefined when the value is fine. */
  check?(value: string): string | undefined;
}

/** An option whose value is one of a fixed set of words. */
export interface EnumSchema<T extends string = string> {
  readonly kind: "enum";
  /** One line saying what the option does; rendered as a comment. */
  readonly doc: string;
  readonly values: readonly T[];
  readonly default: T;
}

/** A list of strings, written as a YAML sequence; each entry is checked as a string option is. */
export interface StringListSchema {
  readonly kind: "strings";
  /** One line saying what the option does; rendered as a comment. */
  readonly doc: string;
  readonly default: readonly string[];
  /** Rules for each entry: returns what is wrong, or undefined when the entry is fine. */
  check?(value: string): string | undefined;
}

/** An option holding a single YAML scalar. */
export type LeafSchema = IntegerSchema | BooleanSchema | StringSchema | EnumSchema;

/** The options of a mapping, in the order they are documented and rendered. */
export type FieldsSchema = { readonly [key: string]: FieldSchema };

/** A mapping of named options; each one may be left out and takes its default. */
export interface SectionSchema<F extends FieldsSchema = FieldsSchema> {
  readonly kind: "section";
  /** One line saying what the section is for; rendered as a comment. */
  readonly doc: string;
  readonly fields: F;
}

/** One kind of list item: the fields an item has when its `type` is this kind. */
export interface VariantSchema<F extends FieldsSchema = FieldsSchema> {
  /** A few words naming the kind, rendered after it in the `type` comment. */
  readonly doc: string;
  readonly fields: F;
  /**
   * Rules between fields: returns the field at fault and what is wrong, or undefined when the item is fine.
   * Method syntax makes the parameter bivariant, so every specific variant is still a VariantSchema.
   */
  check?(item: InferFields<F>): { field: keyof F & string; message: string } | undefined;
}

/** The kinds of list item, by the value of their `type` field. */
export type VariantsSchema = { readonly [type: string]: VariantSchema };

/**
 * A non-empty list of mappings whose `type` field picks the fields they may
 * have, so that adding a kind of item is adding a variant.
 */
export interface ListSchema<V extends VariantsSchema = VariantsSchema> {
  readonly kind: "list";
  /** One line saying what the list is for; rendered as a comment. */
  readonly doc: string;
  /** One line saying what `type` selects; the kinds are appended when rendered. */
  readonly typeDoc: string;
  readonly variants: V;
  /**
   * The `type` of an item that names none, and of the list's one item when the
   * list is left out.
   */
  readonly defaultType: keyof V & string;
  /**
   * Items that must not share a key: `key` returns it (or `undefined` when the
   * item cannot clash), `what` names it in the error message.
   */
  readonly unique?: {
    readonly what: string;
    // Method syntax makes the parameter bivariant, so every specific list is still a ListSchema.
    key(item: Item<V>): string | undefined;
  };
}

/** Any option or group of options. */
export type FieldSchema = LeafSchema | StringListSchema | SectionSchema | ListSchema;

/** The TypeScript type of the values a schema accepts. */
export type Infer<S> = S extends IntegerSchema<infer T> ? T
  : S extends EnumSchema<infer T> ? T
  : S extends BooleanSchema ? boolean
  : S extends StringSchema ? string
  : S extends StringListSchema ? string[]
  : S extends SectionSchema<infer F> ? InferFields<F>
  : S extends ListSchema<infer V> ? Item<V>[]
  : never;

type InferFields<F> = { -readonly [K in keyof F]: Infer<F[K]> };

/** One list item: `type` plus the fields of the variant it names. */
export type Item<V> = {
  [T in keyof V]: V[T] extends VariantSchema<infer F>
    // Spelled out as one mapped type, not an intersection, so hovers and errors show a plain object.
    ? { -readonly [K in "type" | keyof F]: K extends keyof F ? Infer<F[K]> : T }
    : never;
}[keyof V];

function integer<T extends number = number>(
  schema: Omit<IntegerSchema<NoInfer<T>>, "kind">,
): IntegerSchema<T> {
  return { kind: "integer", ...schema };
}

function boolean(schema: Omit<BooleanSchema, "kind">): BooleanSchema {
  return { kind: "boolean", ...schema };
}

function string(schema: Omit<StringSchema, "kind">): StringSchema {
  return { kind: "string", ...schema };
}

function strings(schema: Omit<StringListSchema, "kind">): StringListSchema {
  return { kind: "strings", ...schema };
}

function oneOf<const T extends string>(schema: Omit<EnumSchema<T>, "kind">): EnumSchema<T> {
  return { kind: "enum", ...schema };
}

function section<const F extends FieldsSchema>(doc: string, fields: F): SectionSchema<F> {
  return { kind: "section", doc, fields };
}

function list<const V extends VariantsSchema>(schema: Omit<ListSchema<V>, "kind">): ListSchema<V> {
  return { kind: "list", ...schema };
}

/** The fields every listener has; `port` defaults to the transport's usual one. */
function listenerFields(port: number) {
  return {
    host: string({
      default: "127.0.0.1",
      doc: "Address to bind: 127.0.0.1 for this machine only, 0.0.0.0 or :: for every interface.",
    }),
    port: integer({ min: 0, max: 65535, default: port, doc: "TCP port; 0 picks a free port." }),
    max_connections: integer({
      min: 0,
      max: 10_000_000,
      default: 0,
      doc: "Open connections on this listener at most; 0 leaves only limits.max_connections.",
    }),
    proxy_protocol: boolean({
      default: false,
      doc: "Connections come through a proxy that starts each with a PROXY header (v1 or v2, as HAProxy " +
        "sends): the client address in it replaces the proxy's.",
    }),
    proxy_trusted_sources: strings({
      default: ["127.0.0.1", "::1"],
      doc:
        "With proxy_protocol: addresses or CIDR ranges of the proxies; a connection from elsewhere is closed.",
      check: (text) => {
        const range = parseAddressRange(text);
        return typeof range === "string" ? range : undefined;
      },
    }),
  } as const;
}

/** The client certificate's identity where the proxy verified it, as a tcp or ws listener can only learn it. */
const proxiedIdentity = {
  use_identity_as_username: boolean({
    default: false,
    doc:
      "With proxy_protocol: the CN of a client certificate the proxy verified (PROXY v2 SSL TLV) becomes " +
      "the MQTT username.",
  }),
} as const;

/** Requiring a client certificate means nothing without the CAs to verify it against. */
function requireNeedsCa(item: { ca_file: string; require_client_certificate: boolean }) {
  return item.require_client_certificate && item.ca_file === ""
    ? {
      field: "require_client_certificate" as const,
      message: "needs ca_file (the CA certificates that client certificates are verified against)",
    }
    : undefined;
}

/** A listener that takes a certificate identity only from the PROXY header needs proxy_protocol for it. */
function identityNeedsProxy(item: { proxy_protocol: boolean; use_identity_as_username: boolean }) {
  return item.use_identity_as_username && !item.proxy_protocol
    ? {
      field: "use_identity_as_username" as const,
      message: "needs proxy_protocol: true (here only the proxy can vouch for a client certificate)",
    }
    : undefined;
}

/** A listener that terminates TLS: its certificate, and the client certificates it asks for. */
const serverTls = {
  cert_file: string({ default: "", required: true, doc: "The server's certificate chain, PEM." }),
  key_file: string({ default: "", required: true, doc: "The server certificate's private key, PEM." }),
  ca_file: string({
    default: "",
    allowEmpty: true,
    doc: "CA certificates (PEM) that client certificates are verified against; empty asks for none.",
  }),
  require_client_certificate: boolean({
    default: false,
    doc: "Refuse, in the TLS handshake, a client without a certificate signed by ca_file.",
  }),
  use_identity_as_username: boolean({
    default: false,
    doc: "The client certificate's subject CN becomes the MQTT username (as in Mosquitto).",
  }),
} as const;

/** The HTTP path of a WebSocket listener. */
const webSocketPath = {
  path: string({
    default: "/mqtt",
    doc: "HTTP path of the WebSocket endpoint; clients must offer the sub-protocol mqtt (or mqttv3.1).",
    check: (path) => path.startsWith("/") ? undefined : "must start with /",
  }),
} as const;

/** Every option of the broker, in the order they are rendered. */
export const SCHEMA = section("", {
  log: section("Diagnostics the broker writes.", {
    level: oneOf({
      values: ["error", "warn", "info", "debug"],
      default: "info",
      doc: "Least severe level written to the log (stderr): error, warn, info or debug.",
    }),
  }),
  listeners: list({
    doc: "Sockets accepting MQTT clients; at least one, no two with the same host and port.",
    typeDoc: "Kind of listener",
    variants: {
      tcp: {
        doc: "MQTT over plain TCP",
        fields: { ...listenerFields(1883), ...proxiedIdentity },
        check: identityNeedsProxy,
      },
      tls: {
        doc: "MQTT over TLS, optionally with client certificates",
        fields: { ...listenerFields(8883), ...serverTls },
        check: requireNeedsCa,
      },
      ws: {
        doc: "MQTT over WebSocket",
        fields: { ...listenerFields(8083), ...webSocketPath, ...proxiedIdentity },
        check: identityNeedsProxy,
      },
      wss: {
        doc: "MQTT over WebSocket over TLS, optionally with client certificates",
        fields: { ...listenerFields(8084), ...webSocketPath, ...serverTls },
        check: requireNeedsCa,
      },
    },
    defaultType: "tcp",
    unique: {
      what: "host and port",
      // Port 0 asks the OS for a free port, so such listeners never clash.
      key: (l) => l.port === 0 ? undefined : formatAddress(l.host, l.port),
    },
  }),
  auth: section("Who may connect.", {
    allow_anonymous: boolean({
      default: true,
      doc: "Accept clients that send no username (as Mosquitto does when it runs with no config).",
    }),
    password_file: string({
      default: "",
      allowEmpty: true,
      doc: "Users and password hashes in Mosquitto's format (vyoma insert-password); empty for none.",
    }),
  }),
  mqtt: section("MQTT protocol behaviour.", {
    max_qos: integer<0 | 1 | 2>({
      min: 0,
      max: 2,
      default: 2,
      doc:
        "Highest QoS granted to a subscription (higher requests are downgraded); MQTT 5 clients may not publish above it.",
    }),
    connect_timeout: integer({
      min: 1,
      max: 3600,
      default: 10,
      doc: "Seconds a new connection has to send its CONNECT before it is closed.",
    }),
    session_expiry: integer({
      min: 0,
      max: 4294967295,
      default: 7200,
      doc:
        "Seconds an offline session is kept at most (3.1.1 clean session 0; caps an MQTT 5 client's own); 0 = no cap.",
    }),
    server_keep_alive: integer({
      min: 0,
      max: 65535,
      default: 0,
      doc:
        "Keep-alive in seconds imposed on MQTT 5 clients (Server Keep Alive); 0 accepts each client's own.",
    }),
    topic_alias_maximum: integer({
      min: 0,
      max: 65535,
      // Mosquitto's default. Each alias holds a topic for the life of the connection, so this bounds that memory.
      default: 10,
      doc: "Topic aliases an MQTT 5 client may set on one connection; 0 disables inbound aliases.",
    }),
    retain_available: boolean({
      default: true,
      doc: "Accept retained messages; when false a PUBLISH with RETAIN set closes the connection.",
    }),
    wildcard_subscriptions: boolean({
      default: true,
      doc: "Accept topic filters with + or #; when false they are refused in SUBACK.",
    }),
    subscription_identifiers: boolean({
      default: true,
      doc:
        "Accept MQTT 5 subscription identifiers; when false a SUBSCRIBE carrying one closes the connection.",
    }),
    shared_subscriptions: boolean({
      default: true,
      doc: "Accept $share/{group}/{filter} subscriptions; when false they are refused in SUBACK.",
    }),
    shared_subscription_strategy: oneOf({
      values: ["round_robin", "least_inflight"],
      default: "round_robin",
      doc:
        "Which member of a shared group gets a message: round_robin, or least_inflight (fewest unacknowledged).",
    }),
    response_information: string({
      default: "",
      allowEmpty: true,
      doc: "Response Information sent to MQTT 5 clients that request it; empty sends none.",
    }),
  }),
  limits: section("Caps that keep one client or a flood of clients from exhausting the broker.", {
    max_connections: integer({
      min: 1,
      max: 10_000_000,
      default: 10_000,
      doc: "Open client connections at most; further connections are closed at once.",
    }),
    max_sessions: integer({
      min: 1,
      max: 10_000_000,
      default: 100_000,
      doc:
        "Sessions (online and offline) at most; one more gets CONNACK 'server unavailable' (MQTT 5: 'quota exceeded').",
    }),
    max_packet_size: integer({
      min: 16,
      max: 268_435_460,
      default: 1_048_576,
      doc:
        "Largest packet a client may send, in bytes, header included (MQTT 5 clients are told); larger ones close it.",
    }),
    max_inflight_messages: integer({
      min: 1,
      max: 65535,
      // EMQX's default. Mosquitto's 20 made the window, not the CPU, the limit of a QoS 1 subscriber (fan-in
      // 8: 166-195k msg/s at 20, 226-241k at 32); resending only on reconnect keeps a larger window cheap.
      default: 32,
      doc:
        "Unacknowledged QoS 1/2 messages per client, each way: the outbound window, and MQTT 5's Receive Maximum.",
    }),
    max_queued_messages: integer({
      min: 1,
      max: 10_000_000,
      default: 1000,
      doc:
        "QoS 1 and 2 messages waiting for one client beyond the inflight window, at most; more are dropped and counted.",
    }),
    max_write_buffer: integer({
      min: 1024,
      max: 1_073_741_824,
      default: 1_048_576,
      doc: "Unsent bytes buffered per connection; QoS 0 messages beyond this are dropped and counted.",
    }),
    max_retained_messages: integer({
      min: 1,
      max: 100_000_000,
      default: 100_000,
      doc: "Retained messages kept at most; retaining on a new topic beyond this is refused and counted.",
    }),
  }),
});

/** The broker's configuration, with every option present. */
export type Config = Infer<typeof SCHEMA>;
/** How much the broker logs; each level includes the ones before it. */
export type LogLevel = Config["log"]["level"];
/** A socket the broker accepts clients on; `type` says which fields it has. */
export type ListenerConfig = Config["listeners"][number];
/** A listener for MQTT over plain TCP. */
export type TcpListenerConfig = Extract<ListenerConfig, { type: "tcp" }>;
/** A listener for MQTT over TLS. */
export type TlsListenerConfig = Extract<ListenerConfig, { type: "tls" }>;
/** A listener for MQTT over WebSocket, with or without TLS. */
export type WebSocketListenerConfig = Extract<ListenerConfig, { type: "ws" | "wss" }>;

/** The value a schema gives an option that is left out, freshly built so callers may keep it. */
export function defaultOf<S extends FieldSchema>(schema: S): Infer<S>;
export function defaultOf(schema: FieldSchema): unknown {
  switch (schema.kind) {
    case "section":
      return Object.fromEntries(
        Object.entries(schema.fields).map(([key, field]) => [key, defaultOf(field)]),
      );
    case "list":
      return [itemDefaults(schema, schema.defaultType)];
    case "strings":
      return [...schema.default];
    default:
      return schema.default;
  }
}

/** A listener of `type` with every option at its default except those given: for tests and tools. */
export function listenerConfig<T extends ListenerConfig["type"]>(
  type: T,
  options: Partial<Extract<ListenerConfig, { type: T }>> = {},
): Extract<ListenerConfig, { type: T }> {
  // The cast holds because itemDefaults builds the item from this variant's fields.
  const defaults = itemDefaults(SCHEMA.fields.listeners, type) as Extract<ListenerConfig, { type: T }>;
  return { ...defaults, ...options };
}

/** A list item of the given type with every field at its default. */
function itemDefaults<V extends VariantsSchema>(
  schema: ListSchema<V>,
  type: string,
): Record<string, unknown> {
  return { type, ...defaultOf(section("", schema.variants[type].fields)) };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    Object.values(value).forEach(deepFreeze);
    Object.freeze(value);
  }
  return value;
}

/** Every option at its default: what an empty config file means. Frozen, so it is safe to share. */
export const DEFAULT_CONFIG: Config = deepFreeze(defaultOf(SCHEMA));
