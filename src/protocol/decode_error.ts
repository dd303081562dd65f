/**
 * Why a frame could not be decoded. MQTT 5.0 tells the two kinds apart in its reason codes: "malformed" is a
 * Malformed Packet (0x81), "protocol" is what the spec calls a Protocol Error (0x82). In MQTT 3.1/3.1.1 both
 * just close the connection.
 */
export interface DecodeError {
  kind: "malformed" | "protocol";
  message: string;
}

export function malformed(message: string): DecodeError {
  return { kind: "malformed", message };
}

export function protocolError(message: string): DecodeError {
  return { kind: "protocol", message };
}
