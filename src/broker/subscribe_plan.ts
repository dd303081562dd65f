/**
 * What a SUBSCRIBE asks for, judged against the spec and the broker's config before anything changes: either a
 * violation that closes the connection, or per filter a subscription to add or the code it is refused with.
 */

import type { Config } from "../config/schema.ts";
import type { ProtocolVersion, QoS, SubscribePacket } from "../protocol/codec.ts";
import { Reason } from "../protocol/reason_codes.ts";
import { quote } from "../observe/log.ts";
import { hasWildcard, parseFilter } from "../protocol/topic.ts";
import type { Subscription } from "./router.ts";

/** SUBACK's failure code in MQTT 3.1.1, which has only this one. */
const V3_FAILURE = 0x80;

export type PlannedFilter =
  /** `key` is the filter as sent (`$share/...` included): the session's name for the subscription. */
  | { readonly key: string; readonly subscription: Subscription }
  | { readonly refused: number };

export type SubscribePlan =
  | { readonly violation: { readonly code: number; readonly reason: string } }
  /** `failure` explains the first refused filter, for a Reason String. */
  | { readonly filters: readonly PlannedFilter[]; readonly failure: string | undefined };

export function planSubscribe(
  packet: SubscribePacket,
  version: ProtocolVersion,
  mqtt: Config["mqtt"],
): SubscribePlan {
  const v5 = version === 5;
  const id = packet.properties?.subscriptionIdentifiers?.[0];
  if (id !== undefined && !mqtt.subscription_identifiers) {
    return violation(
      Reason.subscriptionIdentifiersNotSupported,
      "subscription identifiers are not available",
    );
  }
  const parsed = packet.subscriptions.map((request) => parseFilter(request.topic));
  for (let i = 0; i < parsed.length; i++) {
    const entry = parsed[i];
    const request = packet.subscriptions[i];
    // MQTT 3.1.1 has no code for a bad filter: the connection closes (spec 4.8, as Mosquitto does).
    if (!v5 && "invalid" in entry) {
      return violation(Reason.protocolError, `invalid topic filter ${quote(request.topic)} in SUBSCRIBE`);
    }
    if ("filter" in entry && entry.group !== undefined && request.noLocal) {
      return violation(Reason.protocolError, "No Local set on a shared subscription [MQTT-3.8.3-4]");
    }
  }
  let failure: string | undefined;
  const filters = packet.subscriptions.map((request, i): PlannedFilter => {
    const entry = parsed[i];
    let refusal: [code: number, reason: string] | undefined;
    if ("invalid" in entry) {
      refusal = [Reason.topicFilterInvalid, `${entry.invalid}: ${quote(request.topic)}`];
    } else if (entry.group !== undefined && !mqtt.shared_subscriptions) {
      refusal = [Reason.sharedSubscriptionsNotSupported, "shared subscriptions are not available"];
    } else if (hasWildcard(entry.filter) && !mqtt.wildcard_subscriptions) {
      refusal = [Reason.wildcardSubscriptionsNotSupported, "wildcard subscriptions are not available"];
    } else {
      const subscription: Subscription = {
        filter: entry.filter,
        qos: Math.min(request.qos, mqtt.max_qos) as QoS,
        noLocal: request.noLocal,
        retainAsPublished: request.retainAsPublished,
        retainHandling: request.retainHandling,
        id,
        group: entry.group,
      };
      return { key: request.topic, subscription };
    }
    failure ??= refusal[1];
    return { refused: v5 ? refusal[0] : V3_FAILURE };
  });
  return { filters, failure };
}

function violation(code: number, reason: string): SubscribePlan {
  return { violation: { code, reason } };
}
