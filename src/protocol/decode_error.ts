/** Why a frame could not be decoded; in MQTT 3.1.1 it always closes the connection. */
export interface DecodeError {
  kind: "malformed";
  message: string;
}

export function malformed(message: string): DecodeError {
  return { kind: "malformed", message };
}
