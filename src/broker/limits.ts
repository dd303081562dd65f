/** The broker's own limits as MQTT 5.0 clients are told them in CONNACK (section 3.2.2.3), and applied. */

import type { Config } from "../config/schema.ts";
import type { Properties } from "../protocol/properties.ts";

/** What every MQTT 5.0 CONNACK announces; a property left out means the spec's default (available, QoS 2). */
export function announcedLimits(config: Config): Properties {
  const { mqtt, limits } = config;
  const properties: Properties = {
    receiveMaximum: limits.max_inflight_messages,
    maximumPacketSize: limits.max_packet_size,
  };
  if (mqtt.topic_alias_maximum > 0) properties.topicAliasMaximum = mqtt.topic_alias_maximum;
  if (mqtt.max_qos < 2) properties.maximumQoS = mqtt.max_qos;
  if (!mqtt.retain_available) properties.retainAvailable = 0;
  if (!mqtt.wildcard_subscriptions) properties.wildcardSubscriptionAvailable = 0;
  if (!mqtt.subscription_identifiers) properties.subscriptionIdentifierAvailable = 0;
  if (!mqtt.shared_subscriptions) properties.sharedSubscriptionAvailable = 0;
  return properties;
}

/** A Session Expiry Interval within `mqtt.session_expiry` (0 there: no cap). */
export function capExpiry(config: Config, seconds: number): number {
  const cap = config.mqtt.session_expiry;
  return cap > 0 && seconds > cap ? cap : seconds;
}
