/**
 * One enhanced-authentication exchange on one connection (MQTT 5.0 section 4.12): finds the authenticator for
 * the method and runs its steps, each of which may be synchronous, asynchronous or throw.
 */

import type { ConnectPacket } from "../protocol/connect.ts";
import { Reason } from "../protocol/reason_codes.ts";
import type { AuthClient, AuthConversation, AuthStep, EnhancedAuthenticator } from "./enhanced.ts";

export class AuthExchange {
  readonly method: string;
  /** The CONNECT being authenticated; undefined for re-authentication of a connected client. */
  readonly connect: ConnectPacket | undefined;
  /** A step is running. */
  busy = false;
  readonly #conversation: AuthConversation;

  private constructor(method: string, connect: ConnectPacket | undefined, conversation: AuthConversation) {
    this.method = method;
    this.connect = connect;
    this.#conversation = conversation;
  }

  /** An exchange with the first authenticator that supports `method`; null if none does. */
  static begin(
    authenticators: readonly EnhancedAuthenticator[],
    method: string,
    client: AuthClient,
    connect: ConnectPacket | undefined,
  ): AuthExchange | null {
    for (const authenticator of authenticators) {
      const conversation = authenticator.begin(method, client, connect === undefined);
      if (conversation) return new AuthExchange(method, connect, conversation);
    }
    return null;
  }

  /** Runs the next step with the client's `data`; `done` gets its outcome, at once or when it settles. */
  step(data: Uint8Array | undefined, done: (step: AuthStep) => void): void {
    this.busy = true;
    const finish = (step: AuthStep) => {
      this.busy = false;
      done(step);
    };
    let step: AuthStep | Promise<AuthStep>;
    try {
      step = this.#conversation.step(data);
    } catch (error) {
      step = failure(error);
    }
    if (step instanceof Promise) step.then(finish, (error) => finish(failure(error)));
    else finish(step);
  }
}

function failure(error: unknown): AuthStep {
  const detail = error instanceof Error ? error.message : String(error);
  return { result: "fail", code: Reason.unspecifiedError, reason: `authenticator failed: ${detail}` };
}
