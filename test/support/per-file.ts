import { afterAll, beforeAll } from "vitest";

/**
 * Something a whole test file shares (a webhook, an emulator): `start` runs in beforeAll and `stop` in
 * afterAll. What this returns reads through to what `start` made, so a test file declares it at top level
 * and uses it like the object itself; touched before beforeAll, it says so.
 */
export function startedForFile<T extends object>(
  what: string,
  start: () => Promise<T>,
  stop: (started: T) => Promise<void>,
): T {
  let started: T | undefined;
  beforeAll(async () => {
    started = await start();
  });
  afterAll(async () => {
    if (started) await stop(started);
  });
  return new Proxy({} as T, {
    get(_, key) {
      if (!started) throw new Error(`${what} starts in beforeAll`);
      return Reflect.get(started, key);
    },
  });
}
