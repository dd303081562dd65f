/**
 * Deciding whether a CONNECT may proceed from its username and password: `auth.allow_anonymous`, and the
 * password file when one is configured. Plugins plug in here later.
 */

import type { Config } from "../config/schema.ts";
import { quote } from "../observe/log.ts";
import { ConnackCode } from "../protocol/codes.ts";

export type AuthResult = { ok: true } | { ok: false; code: ConnackCode; reason: string };

export interface Credentials {
  username?: string;
  password?: Uint8Array;
}

/** Where usernames and passwords are checked: the password file. */
export interface PasswordCheck {
  /** False for a wrong password and for an unknown user alike, in about the same time. */
  verify(username: string, password: Uint8Array | undefined): Promise<boolean>;
}

const ANONYMOUS_REFUSED: AuthResult = {
  ok: false,
  code: ConnackCode.notAuthorized,
  reason: "anonymous clients are not allowed",
};

/**
 * Mosquitto's rules: a client without a username needs `allow_anonymous`; with a password file, a client
 * with a username needs the right password; without one, a username is taken as given when anonymous
 * clients are allowed, and refused otherwise. Synchronous unless a password must be checked.
 */
export function authenticate(
  credentials: Credentials,
  config: Config["auth"],
  passwords: PasswordCheck | undefined,
): AuthResult | Promise<AuthResult> {
  const { username, password } = credentials;
  if (username === undefined) return config.allow_anonymous ? { ok: true } : ANONYMOUS_REFUSED;
  if (passwords) {
    return passwords.verify(username, password).then((ok): AuthResult =>
      // The same answer for an unknown user and a wrong password: a client learns nothing of which users exist.
      ok
        ? { ok: true }
        : { ok: false, code: ConnackCode.badUsernameOrPassword, reason: "bad user name or password" }
    );
  }
  if (config.allow_anonymous) return { ok: true };
  return {
    ok: false,
    code: ConnackCode.notAuthorized,
    reason: `user ${quote(username)} cannot be verified: no password file is configured`,
  };
}
