/**
 * Preload (`node --import`) for tests: records every module the process loads — files and packages
 * through a module.registerHooks load hook (ESM and require alike), Node's own internals through
 * process.moduleLoadList — and writes both as JSON to $AGENTID_TEST_MODULE_LOG when the process exits.
 * Node's global fetch, Headers, Request and Response show up as `NativeModule internal/deps/undici/undici`.
 */
import { writeFileSync } from "node:fs";
import { registerHooks } from "node:module";

const target = process.env.AGENTID_TEST_MODULE_LOG;
if (!target) throw new Error("module-recorder needs AGENTID_TEST_MODULE_LOG (the file to write)");

const urls: string[] = [];
registerHooks({
  load(url, context, nextLoad) {
    urls.push(url);
    return nextLoad(url, context);
  },
});

process.on("exit", () => {
  const internals = (process as unknown as { moduleLoadList: string[] }).moduleLoadList;
  writeFileSync(target, JSON.stringify({ urls, internals: [...internals] }));
});
