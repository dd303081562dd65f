/** CONNACK return codes of MQTT 3.1 and 3.1.1 (section 3.2.2.3). */
export const ConnackCode = {
  accepted: 0,
  unacceptableProtocolVersion: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUsernameOrPassword: 4,
  notAuthorized: 5,
} as const;
export type ConnackCode = typeof ConnackCode[keyof typeof ConnackCode];

/** What a CONNACK return code means, for log lines. */
export const CONNACK_REASON: Record<ConnackCode, string> = {
  0: "accepted",
  1: "unacceptable protocol version",
  2: "identifier rejected",
  3: "server unavailable",
  4: "bad user name or password",
  5: "not authorized",
};
