/**
 * Topic names and filters (MQTT 3.1.1 section 4.7, 5.0 section 4.7).
 * The codec has already rejected U+0000 and bad UTF-8; these are the wildcard and length rules.
 */

/** A topic name as PUBLISH and will messages carry it: non-empty, no wildcards [MQTT-3.3.2-2, 4.7.3-1]. */
export function isValidTopicName(topic: string): boolean {
  return topic.length > 0 && !topic.includes("+") && !topic.includes("#");
}

/**
 * A topic filter: non-empty; `+` only as a whole level; `#` only as the whole last level
 * [MQTT-4.7.1-2, 4.7.1-3, 4.7.3-1].
 */
function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0) return false;
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) return false;
    if (level.includes("+") && level !== "+") return false;
  }
  return true;
}

/** A filter as a SUBSCRIBE names it: a plain filter, or a shared one with its group (MQTT 5.0 section 4.8.2). */
export type ParsedFilter = { filter: string; group: string | undefined } | { invalid: string };

const SHARE_PREFIX = "$share/";

/**
 * Splits `$share/{group}/{filter}`; any other string is a plain filter. The group name must be non-empty and
 * free of `/`, `+` and `#`, and be followed by `/` and a valid filter [MQTT-4.8.2-1, MQTT-4.8.2-2].
 */
export function parseFilter(text: string): ParsedFilter {
  if (!text.startsWith(SHARE_PREFIX)) {
    return isValidTopicFilter(text)
      ? { filter: text, group: undefined }
      : { invalid: "invalid topic filter" };
  }
  const slash = text.indexOf("/", SHARE_PREFIX.length);
  const group = text.slice(SHARE_PREFIX.length, slash < 0 ? undefined : slash);
  if (group.length === 0 || group.includes("+") || group.includes("#")) {
    return { invalid: "invalid shared subscription group name" };
  }
  if (slash < 0) return { invalid: "shared subscription has no topic filter after its group" };
  const filter = text.slice(slash + 1);
  return isValidTopicFilter(filter) ? { filter, group } : { invalid: "invalid topic filter" };
}

/** True if the filter has a `+` or `#` level. */
export function hasWildcard(filter: string): boolean {
  return filter.includes("+") || filter.includes("#");
}
