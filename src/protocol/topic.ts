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
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0) return false;
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) return false;
    if (level.includes("+") && level !== "+") return false;
  }
  return true;
}
