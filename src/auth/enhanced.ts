/**
 * Enhanced authentication (MQTT 5.0 section 4.12): a CONNECT that names an Authentication Method starts an
 * exchange of AUTH packets, which the broker hands to whichever authenticator supports the method. The broker
 * ships none; the plugin host (hook `enhancedAuth`) and tests provide them.
 */

/** Who is authenticating, as the broker knows them when the exchange starts. */
export interface AuthClient {
  readonly clientId: string;
  readonly username?: string;
  /** The peer's address and port, as the transport reports them. */
  readonly address: string;
  readonly port: number;
  readonly protocolVersion: 5;
}

/** One step's outcome. `data` becomes the Authentication Data of the AUTH or CONNACK the broker sends. */
export type AuthStep =
  | { readonly result: "continue"; readonly data?: Uint8Array }
  | { readonly result: "success"; readonly data?: Uint8Array }
  /** `code` is a CONNACK/DISCONNECT reason code (0x80 or above); `reason` is logged and sent as Reason String. */
  | { readonly result: "fail"; readonly code: number; readonly reason: string };

/** One exchange: the first step gets the CONNECT's (or re-authenticating AUTH's) data, later ones each AUTH's. */
export interface AuthConversation {
  step(data: Uint8Array | undefined): AuthStep | Promise<AuthStep>;
}

export interface EnhancedAuthenticator {
  /**
   * Starts an exchange for `method`, or returns null if this authenticator does not support it. `reauth` is
   * true for re-authentication of a connected client (AUTH with reason 0x19).
   */
  begin(method: string, client: AuthClient, reauth: boolean): AuthConversation | null;
}
