/** oncePerKind: the log-flood guard for failures any client can cause. */

import assert from "node:assert/strict";
import { createLogger, oncePerKind } from "../../src/observe/log.ts";

function recorder(): { lines: string[]; report: (kind: string, line: string) => void } {
  const lines: string[] = [];
  return { lines, report: oncePerKind(createLogger("debug", (line) => lines.push(line))) };
}

Deno.test("oncePerKind: the first line of a kind at info, repeats at debug", () => {
  const { lines, report } = recorder();
  report("a", "first a");
  report("a", "second a");
  report("b", "first b");
  assert.deepEqual(lines.map((l) => l.replace(/^\S+ /, "")), [
    "INFO  first a",
    "DEBUG second a",
    "INFO  first b",
  ]);
});

Deno.test("oncePerKind: remembers 1,024 kinds at most, then starts over", () => {
  const { lines, report } = recorder();
  for (let i = 0; i < 1024; i++) report(`kind ${i}`, `line ${i}`);
  report("kind 0", "kind 0 again");
  assert.match(lines.at(-1)!, /DEBUG kind 0 again$/);
  report("kind 1024", "one kind too many");
  report("kind 0", "kind 0 once more");
  // The set was cleared for kind 1024, so kind 0 is news again.
  assert.ok(lines.at(-1)!.endsWith("INFO  kind 0 once more"), lines.join("\n"));
});
