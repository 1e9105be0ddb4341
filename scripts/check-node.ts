// Fails fast, with a message a person can act on, when npm scripts run on a Node older than the project's.
// npm puts node_modules/.bin first on PATH, where the `node` dev dependency provides Node 24.
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  console.error(
    `agentid needs Node.js 24 (found ${process.version} at ${process.execPath}). ` +
      "Run `npm ci` first: it installs Node 24 as a dev dependency that npm scripts use.",
  );
  process.exit(1);
}
