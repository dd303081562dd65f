/** MQTT.js (npm:mqtt), the client most JavaScript users run, connected to a test broker. */

import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { within } from "./wait.ts";

export interface ReceivedMessage {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
  dup: boolean;
}

export interface TestClient extends AsyncDisposable {
  readonly mqtt: MqttClient;
  /** Every message received so far, in order. */
  readonly messages: ReceivedMessage[];
  /** Waits until at least `count` messages have arrived; returns them all. */
  received(count: number, ms?: number): Promise<ReceivedMessage[]>;
  /** Ends the client (DISCONNECT unless `force`), waiting for its socket to close. */
  end(force?: boolean): Promise<void>;
}

/** Connects MQTT.js (3.1.1, no reconnects) and waits for CONNACK. */
export async function connectMqttJs(port: number, options: IClientOptions = {}): Promise<TestClient> {
  const client = mqtt.connect({
    host: "127.0.0.1",
    port,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...options,
  });
  const messages: ReceivedMessage[] = [];
  const waiters = new Set<() => void>();
  client.on("message", (topic, payload, packet) => {
    messages.push({
      topic,
      payload: payload.toString(),
      qos: packet.qos,
      retain: packet.retain,
      dup: packet.dup,
    });
    for (const wake of waiters) wake();
  });
  await within(
    new Promise<void>((resolve, reject) => {
      client.once("connect", () => resolve());
      client.once("error", reject);
      client.once("close", () => reject(new Error("connection closed before CONNACK")));
    }),
    "MQTT.js to connect",
  );
  const end = (force = false) => client.endAsync(force);
  return {
    mqtt: client,
    messages,
    received(count, ms) {
      return within(
        new Promise<ReceivedMessage[]>((resolve) => {
          const check = () => {
            if (messages.length < count) return;
            waiters.delete(check);
            resolve(messages);
          };
          waiters.add(check);
          check();
        }),
        `${count} message(s) on MQTT.js client`,
        ms,
      );
    },
    end,
    [Symbol.asyncDispose]: () => end(true),
  };
}
