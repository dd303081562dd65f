// Run with env access for LOG_TOKENS and LOG_STREAM, which the yaml package reads while parsing
// (`deno task test` grants it): deno test --allow-read --allow-write --allow-env tests/config.test.ts
import assert from "node:assert/strict";
import { type ConfigError, formatConfigError, loadConfigFile, parseConfig } from "../src/config/load.ts";
import { renderDefaultConfig } from "../src/config/render.ts";
import {
  type Config,
  DEFAULT_CONFIG,
  type ListenerConfig,
  listenerConfig,
  type LogLevel,
} from "../src/config/schema.ts";

/** The formatted error for config text, failing the test if the text is valid. */
function errorOf(text: string): string {
  const result = parseConfig(text, "cfg.yaml");
  if (result.ok) assert.fail(`expected an error, got ${JSON.stringify(result.config)}`);
  return formatConfigError(result.error);
}

function configOf(text: string): Config {
  const result = parseConfig(text, "cfg.yaml");
  if (!result.ok) assert.fail(formatConfigError(result.error));
  return result.config;
}

// The shapes the rest of the broker relies on, spelled out; Config itself is inferred from the schema.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
/** A listener's own fields plus what every listener has, as one flat object type. */
type Listening<Own> = {
  [K in keyof (Own & Shared)]: (Own & Shared)[K];
};
interface Shared {
  host: string;
  port: number;
  max_connections: number;
  proxy_protocol: boolean;
  proxy_trusted_sources: string[];
}
interface ExpectedConfig {
  log: { level: "error" | "warn" | "info" | "debug" };
  listeners: (
    | Listening<{ type: "tcp"; use_identity_as_username: boolean }>
    | Listening<{
      type: "tls";
      cert_file: string;
      key_file: string;
      ca_file: string;
      require_client_certificate: boolean;
      use_identity_as_username: boolean;
    }>
    | Listening<{ type: "ws"; path: string; use_identity_as_username: boolean }>
    | Listening<{
      type: "wss";
      path: string;
      cert_file: string;
      key_file: string;
      ca_file: string;
      require_client_certificate: boolean;
      use_identity_as_username: boolean;
    }>
  )[];
  auth: { allow_anonymous: boolean; password_file: string };
  mqtt: {
    max_qos: 0 | 1 | 2;
    connect_timeout: number;
    session_expiry: number;
    server_keep_alive: number;
    topic_alias_maximum: number;
    retain_available: boolean;
    wildcard_subscriptions: boolean;
    subscription_identifiers: boolean;
    shared_subscriptions: boolean;
    shared_subscription_strategy: "round_robin" | "least_inflight";
    response_information: string;
  };
  limits: {
    max_connections: number;
    max_sessions: number;
    max_packet_size: number;
    max_inflight_messages: number;
    max_queued_messages: number;
    max_write_buffer: number;
    max_retained_messages: number;
  };
}
const typesMatch: [
  Equal<Config, ExpectedConfig>,
  Equal<LogLevel, ExpectedConfig["log"]["level"]>,
  Equal<ListenerConfig, ExpectedConfig["listeners"][number]>,
] = [true, true, true];

const EXPECTED_DEFAULTS: ExpectedConfig = {
  log: { level: "info" },
  listeners: [{
    type: "tcp",
    host: "127.0.0.1",
    port: 1883,
    max_connections: 0,
    proxy_protocol: false,
    proxy_trusted_sources: ["127.0.0.1", "::1"],
    use_identity_as_username: false,
  }],
  auth: { allow_anonymous: true, password_file: "" },
  mqtt: {
    max_qos: 2,
    connect_timeout: 10,
    session_expiry: 7200,
    server_keep_alive: 0,
    topic_alias_maximum: 10,
    retain_available: true,
    wildcard_subscriptions: true,
    subscription_identifiers: true,
    shared_subscriptions: true,
    shared_subscription_strategy: "round_robin",
    response_information: "",
  },
  limits: {
    max_connections: 10000,
    max_sessions: 100000,
    max_packet_size: 1048576,
    max_inflight_messages: 32,
    max_queued_messages: 1000,
    max_write_buffer: 1048576,
    max_retained_messages: 100000,
  },
};

Deno.test("the tests run with the env access the yaml package needs", () => {
  for (const variable of ["LOG_TOKENS", "LOG_STREAM"]) {
    const { state } = Deno.permissions.querySync({ name: "env", variable });
    assert.equal(state, "granted", `run with --allow-env (or --allow-env=LOG_TOKENS,LOG_STREAM)`);
  }
});

Deno.test("config types have the shapes the broker imports", () => {
  assert.deepEqual(typesMatch, [true, true, true]);
});

Deno.test("DEFAULT_CONFIG holds the documented defaults and is frozen", () => {
  assert.deepEqual(DEFAULT_CONFIG, EXPECTED_DEFAULTS);
  assert.throws(() => {
    (DEFAULT_CONFIG.listeners[0] as { port: number }).port = 1;
  }, TypeError);
  assert.throws(() => DEFAULT_CONFIG.listeners.push(DEFAULT_CONFIG.listeners[0]), TypeError);
});

Deno.test("empty, comments-only and null texts give the defaults", () => {
  for (const text of ["", "\n\n", "# nothing here\n  # indented comment\n", "~\n", "---\n"]) {
    assert.deepEqual(configOf(text), EXPECTED_DEFAULTS, JSON.stringify(text));
  }
});

Deno.test("a parsed config is a fresh object, not shared with DEFAULT_CONFIG", () => {
  const config = configOf("");
  config.listeners[0].port = 1;
  config.limits.max_connections = 1;
  assert.equal(DEFAULT_CONFIG.listeners[0].port, 1883);
  assert.equal(configOf("").listeners[0].port, 1883);
});

Deno.test("omitted sections and keys take defaults; empty sections too", () => {
  const config = configOf("mqtt:\n  max_qos: 1\nlimits:\nauth: {}\n");
  assert.deepEqual(config, { ...EXPECTED_DEFAULTS, mqtt: { ...EXPECTED_DEFAULTS.mqtt, max_qos: 1 } });
});

Deno.test("a full custom config parses to the expected object", () => {
  const text = `# custom
log:
  level: debug
listeners:
  - type: tcp
    host: 0.0.0.0
    port: 1883
  - port: 0
  - host: "::"
    port: 0
  - {host: localhost, port: 65535}
auth:
  allow_anonymous: false
mqtt:
  max_qos: 0
  connect_timeout: 3600
  session_expiry: 4294967295
  server_keep_alive: 65535
  topic_alias_maximum: 0
  retain_available: false
  wildcard_subscriptions: false
  subscription_identifiers: false
  shared_subscriptions: false
  shared_subscription_strategy: least_inflight
  response_information: ""
limits:
  max_connections: 1
  max_sessions: 10000000
  max_packet_size: 16
  max_inflight_messages: 65535
  max_queued_messages: 1
  max_write_buffer: 1024
  max_retained_messages: 100000000
`;
  const expected: Config = {
    log: { level: "debug" },
    listeners: [
      listenerConfig("tcp", { host: "0.0.0.0" }),
      listenerConfig("tcp", { port: 0 }),
      listenerConfig("tcp", { host: "::", port: 0 }),
      listenerConfig("tcp", { host: "localhost", port: 65535 }),
    ],
    auth: { allow_anonymous: false, password_file: "" },
    mqtt: {
      max_qos: 0,
      connect_timeout: 3600,
      session_expiry: 4294967295,
      server_keep_alive: 65535,
      topic_alias_maximum: 0,
      retain_available: false,
      wildcard_subscriptions: false,
      subscription_identifiers: false,
      shared_subscriptions: false,
      shared_subscription_strategy: "least_inflight",
      response_information: "",
    },
    limits: {
      max_connections: 1,
      max_sessions: 10000000,
      max_packet_size: 16,
      max_inflight_messages: 65535,
      max_queued_messages: 1,
      max_write_buffer: 1024,
      max_retained_messages: 100000000,
    },
  };
  assert.deepEqual(configOf(text), expected);
  // Hex and octal are integers in YAML 1.2 too.
  assert.equal(configOf("listeners:\n  - port: 0x75b\n").listeners[0].port, 1883);
});

const INTEGERS: [string, number, number][] = [
  ["mqtt.max_qos", 0, 2],
  ["mqtt.connect_timeout", 1, 3600],
  ["mqtt.session_expiry", 0, 4294967295],
  ["limits.max_connections", 1, 10000000],
  ["limits.max_sessions", 1, 10000000],
  ["limits.max_packet_size", 16, 268435460],
  ["limits.max_inflight_messages", 1, 65535],
  ["limits.max_queued_messages", 1, 10000000],
  ["limits.max_write_buffer", 1024, 1073741824],
  ["limits.max_retained_messages", 1, 100000000],
  ["listeners[0].port", 0, 65535],
];
// [field, value as written in YAML, expected message]
const BAD_VALUES: [string, string, string][] = [
  ...INTEGERS.flatMap(([field, min, max]): [string, string, string][] => {
    const must = `must be an integer between ${min} and ${max}`;
    return [
      [field, `${min - 1}`, `${must} (got ${min - 1})`],
      [field, `${max + 1}`, `${must} (got ${max + 1})`],
      [field, "abc", `${must} (got "abc")`],
      [field, `"${min}"`, `${must} (got "${min}")`],
      [field, `${min}.0`, `${must} (got ${min}.0)`],
      [field, "1.5", `${must} (got 1.5)`],
      [field, "1e3", `${must} (got 1e3)`],
      [field, "true", `${must} (got true)`],
      [field, "", `${must} (got null)`],
      [field, "~", `${must} (got null)`],
      [field, "[1]", `${must} (got a list)`],
      [field, "{a: 1}", `${must} (got a mapping)`],
    ];
  }),
  ["log.level", "verbose", 'must be one of error, warn, info, debug (got "verbose")'],
  ["log.level", "INFO", 'must be one of error, warn, info, debug (got "INFO")'],
  ["log.level", "1", "must be one of error, warn, info, debug (got 1)"],
  ["log.level", "", "must be one of error, warn, info, debug (got null)"],
  ["auth.allow_anonymous", "yes", 'must be true or false (got "yes")'],
  ["auth.allow_anonymous", '"true"', 'must be true or false (got "true")'],
  ["auth.allow_anonymous", "1", "must be true or false (got 1)"],
  ["auth.allow_anonymous", "", "must be true or false (got null)"],
  ["listeners[0].host", '""', 'must be a non-empty string (got "")'],
  ["listeners[0].host", '"  "', 'must be a non-empty string (got "  ")'],
  ["listeners[0].host", "8", "must be a non-empty string (got 8)"],
  ["listeners[0].host", "", "must be a non-empty string (got null)"],
  ["listeners[0].host", "[a, b]", "must be a non-empty string (got a list)"],
  ["mqtt.response_information", "8", "must be a string (got 8)"],
  ["mqtt.response_information", "[a]", "must be a string (got a list)"],
  [
    "mqtt.shared_subscription_strategy",
    "random",
    'must be one of round_robin, least_inflight (got "random")',
  ],
  ["mqtt.wildcard_subscriptions", "no", 'must be true or false (got "no")'],
  ["listeners[0].type", "udp", 'must be one of tcp, tls, ws, wss (got "udp")'],
  ["listeners[0].type", "", "must be one of tcp, tls, ws, wss (got null)"],
];

/** Config text putting `value` at `field`, always on line 3. */
function placed(field: string, value: string): string {
  if (field === "listeners[0].type") return `# leading comment\nlisteners:\n  - type: ${value}\n`;
  const item = /^listeners\[0\]\.(\w+)$/.exec(field);
  if (item) return `listeners:\n  - type: tcp\n    ${item[1]}: ${value}\n`;
  const [section, key] = field.split(".");
  return `# leading comment\n${section}:\n  ${key}: ${value}\n`;
}

Deno.test("every field rejects wrong types and out-of-range values with line and path", () => {
  for (const [field, value, message] of BAD_VALUES) {
    const text = placed(field, value);
    assert.equal(errorOf(text), `cfg.yaml:3: ${field}: ${message}`, text);
  }
});

Deno.test("every integer accepts its bounds", () => {
  for (const [field, min, max] of INTEGERS) {
    for (const value of [min, max]) {
      const config = configOf(placed(field, `${value}`)) as unknown as Record<string, unknown>;
      const got = field.startsWith("listeners")
        ? (config.listeners as ListenerConfig[])[0].port
        : (config[field.split(".")[0]] as Record<string, unknown>)[field.split(".")[1]];
      assert.equal(got, value, field);
    }
  }
});

Deno.test("unknown keys are reported with the full path and a suggestion when one is close", () => {
  assert.equal(
    errorOf("log:\n  level: info\nlimts:\n  x: 1\n"),
    "cfg.yaml:3: limts: unknown key (did you mean limits?)",
  );
  assert.equal(errorOf("colour: red\n"), "cfg.yaml:1: colour: unknown key");
  assert.equal(
    errorOf("limits:\n  max_connections: 5\n  max_pakcet_size: 5\n"),
    "cfg.yaml:3: limits.max_pakcet_size: unknown key (did you mean max_packet_size?)",
  );
  assert.equal(
    errorOf("mqtt:\n  Max_QoS: 1\n"),
    "cfg.yaml:2: mqtt.Max_QoS: unknown key (did you mean max_qos?)",
  );
  assert.equal(errorOf("auth:\n  acl_fil: x\n"), "cfg.yaml:2: auth.acl_fil: unknown key");
  assert.equal(
    errorOf("listeners:\n  - port: 1\n  - host: a\n    prot: 2\n"),
    "cfg.yaml:4: listeners[1].prot: unknown key (did you mean port?)",
  );
  assert.equal(
    errorOf("listeners:\n  - typ: tcp\n"),
    "cfg.yaml:2: listeners[0].typ: unknown key (did you mean type?)",
  );
  assert.equal(errorOf("listeners:\n  - cert: a.pem\n"), "cfg.yaml:2: listeners[0].cert: unknown key");
  // Names from Object.prototype are not options.
  assert.equal(errorOf("constructor: 1\n"), "cfg.yaml:1: constructor: unknown key");
  assert.equal(errorOf("1883: 1\n"), "cfg.yaml:1: 1883: unknown key");
});

Deno.test("only the first error in document order is reported", () => {
  const text = "mqtt:\n  max_qos: 9\nlog:\n  level: loud\n";
  assert.equal(errorOf(text), "cfg.yaml:2: mqtt.max_qos: must be an integer between 0 and 2 (got 9)");
  assert.equal(
    errorOf("log:\n  level: loud\nmqtt:\n  max_qos: 9\n"),
    'cfg.yaml:2: log.level: must be one of error, warn, info, debug (got "loud")',
  );
  assert.equal(
    errorOf("limits:\n  max_sessions: 0\n  bogus: 1\n"),
    "cfg.yaml:2: limits.max_sessions: must be an integer between 1 and 10000000 (got 0)",
  );
});

Deno.test("the value's own line is reported when it is not on the key's line", () => {
  assert.equal(
    errorOf("mqtt:\n  connect_timeout:\n    0\n"),
    "cfg.yaml:3: mqtt.connect_timeout: must be an integer between 1 and 3600 (got 0)",
  );
});

Deno.test("YAML syntax errors are one line with the line number", () => {
  const cases: [string, number][] = [
    ["log:\n  level: info\nmqtt: [1\nlimits: {}\n", 4],
    ["log: level: info\n", 1],
    ['log:\n  level: "info\n', 3],
    ["log:\n  level: info\n level: debug\n", 3],
  ];
  for (const [text, line] of cases) {
    const error = errorOf(text);
    assert.match(error, new RegExp(`^cfg\\.yaml:${line}: YAML syntax error: [^\\n]+$`), text);
  }
  assert.equal(
    errorOf("log:\n  level: info\n---\nlog:\n  level: debug\n"),
    "cfg.yaml:3: YAML syntax error: more than one document (---); a config file holds one",
  );
});

Deno.test("duplicate keys are errors at the second key", () => {
  assert.equal(
    errorOf("limits:\n  max_connections: 1\n  max_connections: 2\n"),
    "cfg.yaml:3: YAML syntax error: Map keys must be unique",
  );
  assert.equal(
    errorOf("log: {}\nauth: {}\nlog: {}\n"),
    "cfg.yaml:3: YAML syntax error: Map keys must be unique",
  );
});

Deno.test("aliases are rejected", () => {
  assert.equal(
    errorOf("limits:\n  max_sessions: &n 5\n  max_connections: *n\n"),
    "cfg.yaml:3: limits.max_connections: YAML aliases are not supported in the config",
  );
});

Deno.test("the top level must be a mapping", () => {
  assert.equal(errorOf("- log\n"), "cfg.yaml:1: the config must be a mapping of sections (got a list)");
  assert.equal(
    errorOf("# a comment\n\nhello\n"),
    'cfg.yaml:1: the config must be a mapping of sections (got "hello")',
  );
});

Deno.test("sections must be mappings", () => {
  assert.equal(errorOf("limits: 5\n"), "cfg.yaml:1: limits: must be a mapping of options (got 5)");
  assert.equal(errorOf("log:\n  - level\n"), "cfg.yaml:2: log: must be a mapping of options (got a list)");
});

Deno.test("listeners must be a non-empty list of mappings", () => {
  assert.equal(errorOf("log: {}\nlisteners: []\n"), "cfg.yaml:2: listeners: must have at least one entry");
  assert.equal(errorOf("listeners:\n"), "cfg.yaml:1: listeners: must have at least one entry");
  assert.equal(errorOf("listeners:\n  port: 1\n"), "cfg.yaml:2: listeners: must be a list (got a mapping)");
  assert.equal(
    errorOf("listeners:\n  - port: 1\n  - 1883\n"),
    "cfg.yaml:3: listeners[1]: must be a mapping of options (got 1883)",
  );
  assert.equal(
    errorOf("listeners:\n  -\n"),
    "cfg.yaml:2: listeners[0]: must be a mapping of options (got null)",
  );
});

Deno.test("a ws listener's path must start with /, and defaults to /mqtt", () => {
  assert.equal(
    errorOf("listeners:\n  - type: ws\n    path: mqtt\n"),
    'cfg.yaml:3: listeners[0].path: must start with / (got "mqtt")',
  );
  const [ws] = configOf("listeners:\n  - type: ws\n").listeners;
  assert.equal(ws.type, "ws");
  assert.deepEqual([ws.port, ws.type === "ws" && ws.path], [8083, "/mqtt"]);
});

Deno.test("proxy_trusted_sources is a list of strings, checked entry by entry", () => {
  const [tcp] =
    configOf("listeners:\n  - proxy_protocol: true\n    proxy_trusted_sources: [10.0.0.0/8, '::1']\n")
      .listeners;
  assert.deepEqual(tcp.proxy_trusted_sources, ["10.0.0.0/8", "::1"]);
  assert.equal(
    errorOf("listeners:\n  - proxy_trusted_sources: 10.0.0.1\n"),
    'cfg.yaml:2: listeners[0].proxy_trusted_sources: must be a list of strings (got "10.0.0.1")',
  );
  assert.equal(
    errorOf("listeners:\n  - proxy_trusted_sources:\n      - 10.0.0.1\n      - 7\n"),
    "cfg.yaml:4: listeners[0].proxy_trusted_sources[1]: must be a non-empty string (got 7)",
  );
});

Deno.test("use_identity_as_username on a tcp or ws listener needs proxy_protocol", () => {
  for (const type of ["tcp", "ws"]) {
    assert.equal(
      errorOf(`listeners:\n  - type: ${type}\n    port: 0\n    use_identity_as_username: true\n`),
      "cfg.yaml:4: listeners[0].use_identity_as_username: needs proxy_protocol: true " +
        "(here only the proxy can vouch for a client certificate)",
    );
    const text =
      `listeners:\n  - type: ${type}\n    use_identity_as_username: true\n    proxy_protocol: true\n`;
    assert.equal(configOf(text).listeners[0].proxy_protocol, true);
  }
});

Deno.test("require_client_certificate needs ca_file, on tls and wss listeners", () => {
  for (const type of ["tls", "wss"]) {
    assert.equal(
      errorOf(
        `listeners:\n  - type: ${type}\n    cert_file: c.pem\n    key_file: k.pem\n` +
          "    require_client_certificate: true\n",
      ),
      "cfg.yaml:5: listeners[0].require_client_certificate: needs ca_file " +
        "(the CA certificates that client certificates are verified against)",
    );
  }
});

Deno.test("a listener's type is checked before its other fields", () => {
  assert.equal(
    errorOf("listeners:\n  - port: abc\n    type: quic\n"),
    'cfg.yaml:3: listeners[0].type: must be one of tcp, tls, ws, wss (got "quic")',
  );
});

Deno.test("two listeners on the same host and port are an error at the second", () => {
  const text =
    "listeners:\n  - port: 1884\n  - host: 0.0.0.0\n    port: 1884\n  - host: 127.0.0.1\n    port: 1884\n";
  assert.equal(
    errorOf(text),
    "cfg.yaml:5: listeners[2]: same host and port as listeners[0] (127.0.0.1:1884)",
  );
  assert.equal(
    errorOf('listeners:\n  - {host: "::", port: 1}\n  - {host: "::", port: 1}\n'),
    "cfg.yaml:3: listeners[1]: same host and port as listeners[0] ([::]:1)",
  );
  // Port 0 asks for a free port, so such listeners never clash.
  assert.equal(configOf("listeners:\n  - port: 0\n  - port: 0\n").listeners.length, 2);
});

Deno.test("formatConfigError leaves out absent parts and keeps to one line", () => {
  const base: ConfigError = { file: "c.yaml", message: "bad" };
  assert.equal(formatConfigError(base), "c.yaml: bad");
  assert.equal(formatConfigError({ ...base, line: 4 }), "c.yaml:4: bad");
  assert.equal(formatConfigError({ ...base, field: "log.level" }), "c.yaml: log.level: bad");
  assert.equal(formatConfigError({ ...base, line: 4, field: "log.level" }), "c.yaml:4: log.level: bad");
  assert.equal(formatConfigError({ ...base, message: "one\n  two" }), "c.yaml: one two");
});

Deno.test("long and multi-line strings are shown short and on one line", () => {
  const error = errorOf(`log:\n  level: |\n    ${"x".repeat(60)}\n    more\n`);
  assert.equal(
    error,
    `cfg.yaml:2: log.level: must be one of error, warn, info, debug (got "${"x".repeat(40)}...")`,
  );
});

Deno.test("renderDefaultConfig round-trips to DEFAULT_CONFIG", () => {
  const text = renderDefaultConfig();
  assert.ok(text.endsWith("\n") && !text.endsWith("\n\n"));
  const result = parseConfig(text, "default.yaml");
  if (!result.ok) assert.fail(formatConfigError(result.error));
  assert.deepEqual(result.config, DEFAULT_CONFIG);
});

Deno.test("renderDefaultConfig documents every option above it", () => {
  const lines = renderDefaultConfig().split("\n");
  assert.match(lines[0], /^# /);
  const keyLines = lines.map((line, i) => [line, i] as const).filter(([line]) => /^\s*(- )?\w+:/.test(line));
  // Every key, section or option, list item's fields included, has its description right above it.
  for (const [line, i] of keyLines) {
    assert.match(lines[i - 1], /^\s*# \S/, `no comment above ${JSON.stringify(line)}`);
  }
  for (
    const key of [
      "level",
      "host",
      "port",
      "allow_anonymous",
      "max_qos",
      "session_expiry",
      "max_retained_messages",
    ]
  ) {
    assert.ok(lines.some((line) => line.trim().startsWith(`${key}: `)), key);
  }
});

Deno.test("loadConfigFile reads and validates a file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/cfg.yaml`;
    await Deno.writeTextFile(path, "\uFEFFmqtt:\n  max_qos: 1\n");
    const result = await loadConfigFile(path);
    if (!result.ok) assert.fail(formatConfigError(result.error));
    assert.equal(result.config.mqtt.max_qos, 1);

    await Deno.writeTextFile(path, "mqtt:\n  max_qos: 7\n");
    const bad = await loadConfigFile(path);
    assert.ok(!bad.ok);
    assert.equal(
      formatConfigError(bad.error),
      `${path}:2: mqtt.max_qos: must be an integer between 0 and 2 (got 7)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfigFile turns unreadable files into errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = await loadConfigFile(`${dir}/missing.yaml`);
    assert.ok(!missing.ok);
    assert.equal(formatConfigError(missing.error), `${dir}/missing.yaml: cannot read config: no such file`);

    const directory = await loadConfigFile(dir);
    assert.ok(!directory.ok);
    assert.equal(formatConfigError(directory.error), `${dir}: cannot read config: it is a directory`);

    await Deno.writeFile(`${dir}/latin1.yaml`, new Uint8Array([0x6c, 0x6f, 0x67, 0x3a, 0x20, 0xe9, 0x0a]));
    const binary = await loadConfigFile(`${dir}/latin1.yaml`);
    assert.ok(!binary.ok);
    assert.equal(formatConfigError(binary.error), `${dir}/latin1.yaml: cannot read config: not UTF-8 text`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "loadConfigFile explains Deno's refusal of read access",
  permissions: { read: false },
  async fn() {
    const result = await loadConfigFile("cfg.yaml");
    assert.ok(!result.ok);
    assert.equal(
      formatConfigError(result.error),
      "cfg.yaml: cannot read config: Deno refused read access " +
        "(`deno task start` may read only files under the working directory)",
    );
  },
});

Deno.test({
  name: "parseConfig explains the env access the yaml package needs",
  permissions: { env: false },
  fn() {
    const result = parseConfig("log: {}\n", "cfg.yaml");
    assert.ok(!result.ok);
    assert.match(
      formatConfigError(result.error),
      /^cfg\.yaml: cannot parse config: .*--allow-env=LOG_TOKENS,LOG_STREAM/,
    );
  },
});

Deno.test("a tls listener needs cert_file and key_file, named with the listener's line", () => {
  assert.equal(
    errorOf("listeners:\n  - type: tls\n    port: 8883\n    key_file: k.pem\n"),
    "cfg.yaml:2: listeners[0].cert_file: is required",
  );
  const config = configOf("listeners:\n  - type: tls\n    cert_file: c.pem\n    key_file: k.pem\n");
  assert.deepEqual(config.listeners[0], {
    type: "tls",
    host: "127.0.0.1",
    port: 8883,
    max_connections: 0,
    proxy_protocol: false,
    proxy_trusted_sources: ["127.0.0.1", "::1"],
    cert_file: "c.pem",
    key_file: "k.pem",
    ca_file: "",
    require_client_certificate: false,
    use_identity_as_username: false,
  });
});
