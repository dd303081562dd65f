/**
 * Broker counters. Every rule that drops something increments one of these, so an operator can see what
 * a limit cost; later issues expose them through $SYS and the admin API.
 */
export interface Metrics {
  connectionsAccepted: number;
  /** Closed at accept because `limits.max_connections` was reached. */
  connectionsRefused: number;
  /** Closed by the broker for a malformed packet, protocol violation, oversize packet or timeout. */
  protocolErrors: number;
  messagesReceived: number;
  messagesSent: number;
  /** QoS 0 deliveries dropped because the connection's write buffer was full. */
  droppedWriteBufferFull: number;
  /** QoS 1/2 deliveries dropped because the session queue was full. */
  droppedQueueFull: number;
  /** Deliveries dropped because they exceeded the client's Maximum Packet Size (MQTT 5.0). */
  droppedTooLarge: number;
  /** Deliveries dropped because their Message Expiry Interval had run out (MQTT 5.0). */
  droppedExpired: number;
  /** Client publishes to `$SYS/...`, which only the broker may publish. */
  droppedSysTopic: number;
  /** Retained messages refused because `limits.max_retained_messages` was reached. */
  retainedRefused: number;
  /** Offline sessions discarded when their expiry interval ran out. */
  sessionsExpired: number;
}

export function createMetrics(): Metrics {
  return {
    connectionsAccepted: 0,
    connectionsRefused: 0,
    protocolErrors: 0,
    messagesReceived: 0,
    messagesSent: 0,
    droppedWriteBufferFull: 0,
    droppedQueueFull: 0,
    droppedTooLarge: 0,
    droppedExpired: 0,
    droppedSysTopic: 0,
    retainedRefused: 0,
    sessionsExpired: 0,
  };
}
