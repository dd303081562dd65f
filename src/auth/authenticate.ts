/**
 * Deciding whether a CONNECT may proceed. Today the only rule is `auth.allow_anonymous`; the password file
 * and plugins plug in here later.
 */

import type { Config } from "../config/schema.ts";
import { ConnackCode } from "../protocol/codes.ts";

export type AuthResult = { ok: true } | { ok: false; code: ConnackCode; reason: string };

export interface Credentials {
  username?: string;
  password?: Uint8Array;
}

export function authenticate(credentials: Credentials, config: Config["auth"]): AuthResult {
  if (config.allow_anonymous) return { ok: true };
  if (credentials.username === undefined) {
    return { ok: false, code: ConnackCode.notAuthorized, reason: "anonymous clients are not allowed" };
  }
  // No credential source exists yet, so no username can be verified.
  return {
    ok: false,
    code: ConnackCode.notAuthorized,
    reason: `user "${credentials.username}" cannot be verified: no password file is configured`,
  };
}
