#!/usr/bin/env node
// Entry point for `npx agentid`: Node 24 runs the TypeScript sources directly (type stripping).
import { runCli } from "../src/cli.ts";

runCli(process.argv.slice(2));
