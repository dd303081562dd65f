/** MQTT 5.0 reason codes the broker sends (section 2.4), by what they mean. */
export const Reason = {
  success: 0x00,
  noMatchingSubscribers: 0x10,
  noSubscriptionExisted: 0x11,
  continueAuthentication: 0x18,
  reauthenticate: 0x19,
  unspecifiedError: 0x80,
  malformedPacket: 0x81,
  protocolError: 0x82,
  implementationSpecificError: 0x83,
  unsupportedProtocolVersion: 0x84,
  clientIdentifierNotValid: 0x85,
  badUserNameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverShuttingDown: 0x8b,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetIdentifierNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  quotaExceeded: 0x97,
  payloadFormatInvalid: 0x99,
  retainNotSupported: 0x9a,
  qosNotSupported: 0x9b,
  sharedSubscriptionsNotSupported: 0x9e,
  subscriptionIdentifiersNotSupported: 0xa1,
  wildcardSubscriptionsNotSupported: 0xa2,
} as const;

/** The CONNACK code of MQTT 5.0 that says what a 3.1.1 return code says (MQTT 5.0 table 3-1 and 3.1.1 3.2.2.3). */
export const V5_CONNACK_OF_V3: Readonly<Record<number, number>> = {
  0: Reason.success,
  1: Reason.unsupportedProtocolVersion,
  2: Reason.clientIdentifierNotValid,
  3: Reason.serverUnavailable,
  4: Reason.badUserNameOrPassword,
  5: Reason.notAuthorized,
};

/** `0x8e` for log lines. */
export function hex(code: number): string {
  return `0x${code.toString(16).padStart(2, "0")}`;
}
