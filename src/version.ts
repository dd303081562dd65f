import denoJson from "../deno.json" with { type: "json" };

/** The version in deno.json, the single place it is set. */
export const VERSION: string = denoJson.version;
