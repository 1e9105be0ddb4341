// Collects what an image's final stage copies, so that stage can start FROM scratch. Runs in the Dockerfile's
// build stages on plain Node (no dependencies, no TypeScript), with either:
//   node collect.mjs runtime <out>                  Node itself and the shared libraries it loads, at their paths
//   node collect.mjs app <app-dir> <out> <entry>... the compiled files reachable from the entries and the
//                                                   node_modules packages they import, with their dependencies
import {
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  symlinkSync,
} from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, resolve } from "node:path";

const [mode, ...args] = process.argv.slice(2);

/** Copies `path` into `out` at the same place, recreating every symlink on the way (e.g. /lib64 -> usr/lib64). */
function copyWithLinks(path, out, seen = new Set()) {
  if (seen.has(path)) return;
  seen.add(path);
  const parts = path.split("/").filter(Boolean);
  let current = "/";
  for (let i = 0; i < parts.length; i++) {
    current = join(current, parts[i]);
    const target = join(out, current);
    const stat = lstatSync(current);
    if (stat.isSymbolicLink()) {
      const link = readlinkSync(current);
      if (!existsSync(target) && !isLink(target)) {
        mkdirSync(dirname(target), { recursive: true });
        symlinkSync(link, target);
      }
      const resolved = resolve(dirname(current), link);
      copyWithLinks(join(resolved, ...parts.slice(i + 1)), out, seen);
      return;
    }
    if (i === parts.length - 1) {
      mkdirSync(dirname(target), { recursive: true });
      copyFileSync(current, target);
    }
  }
}

function isLink(path) {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** The ELF interpreter (dynamic loader) of a binary, read from its PT_INTERP program header. */
function interpreterOf(binary) {
  const elf = readFileSync(binary);
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (elf.readUInt32LE(at) === 3) {
      const offset = Number(elf.readBigUInt64LE(at + 8));
      const size = Number(elf.readBigUInt64LE(at + 32));
      return elf.subarray(offset, offset + size - 1).toString();
    }
  }
  return undefined;
}

function runtime(out) {
  // Every shared object this very process has mapped: exactly what Node needs to start.
  const maps = readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .map((line) => line.split(/\s+/)[5])
    .filter((p) => p?.startsWith("/") && /\.so(\.|$)/.test(p));
  const interpreter = interpreterOf(process.execPath);
  for (const path of new Set([process.execPath, ...maps, ...(interpreter ? [interpreter] : [])])) {
    copyWithLinks(path, out);
  }
  // The loader looks libraries up by soname (libstdc++.so.6), a symlink beside the file that is mapped.
  for (const lib of new Set(maps)) {
    const dir = dirname(lib);
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (isLink(path) && realpathSync(path) === realpathSync(lib)) copyWithLinks(path, out);
    }
  }
  mkdirSync(join(out, "tmp"), { recursive: true, mode: 0o1777 });
}

// Static imports and re-exports (group 1); dynamic import(), require(), createRequire(...)("x") and
// require.resolve("x") (group 2: loaded when the code runs, so followed from every file but the CLI itself).
const IMPORT =
  /(?:^|[^\w.])(?:import|export)\s*(?:[^"'`;]*?\sfrom\s*)?["']([^"']+)["']|(?:import\(|require\(|\)\(|\.resolve\()\s*["']([^"']+)["']\s*\)/g;

function packageName(specifier) {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

function app(appDir, out, entries) {
  const files = new Set();
  const packages = new Set();
  const queue = entries.map((e) => ({ file: resolve(appDir, e), followDynamic: e !== entries[0] }));
  while (queue.length > 0) {
    const { file, followDynamic } = queue.shift();
    if (files.has(file)) continue;
    files.add(file);
    const text = readFileSync(file, "utf8");
    for (const match of text.matchAll(IMPORT)) {
      const specifier = match[1] ?? match[2];
      const dynamic = match[2] !== undefined;
      if (dynamic && !followDynamic) continue; // the CLI's other commands: loaded only when called
      if (specifier.startsWith("node:") || builtinModules.includes(specifier)) continue;
      if (specifier.startsWith("."))
        queue.push({ file: resolve(dirname(file), specifier), followDynamic: true });
      else packages.add(packageName(specifier));
    }
  }
  for (const file of files) {
    const target = join(out, file.slice(resolve(appDir).length));
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(file, target);
  }
  // The packages and everything they depend on, found the way Node resolves them (nested first).
  const copied = new Set();
  const visit = (name, fromDir) => {
    let dir = fromDir;
    let pkgDir;
    while (true) {
      const candidate = join(dir, "node_modules", name);
      if (existsSync(join(candidate, "package.json"))) {
        pkgDir = candidate;
        break;
      }
      if (dir === resolve(appDir)) break;
      dir = dirname(dir);
    }
    if (!pkgDir || copied.has(pkgDir)) return;
    copied.add(pkgDir);
    cpSync(pkgDir, join(out, pkgDir.slice(resolve(appDir).length)), {
      recursive: true,
      verbatimSymlinks: true,
    });
    const manifest = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
    for (const dep of Object.keys({
      ...manifest.dependencies,
      ...manifest.optionalDependencies,
      ...manifest.peerDependencies,
    })) {
      visit(dep, pkgDir);
    }
  };
  for (const name of packages) visit(name, resolve(appDir));
  copyFileSync(join(appDir, "package.json"), join(out, "package.json"));
  console.log(
    `collected ${files.size} files and ${copied.size} packages (${[...packages].sort().join(", ")})`,
  );
}

if (mode === "runtime" && args[0]) runtime(args[0]);
else if (mode === "app" && args.length >= 3) app(args[0], args[1], args.slice(2));
else {
  console.error("usage: collect.mjs runtime <out> | app <app-dir> <out> <entry>...");
  process.exit(2);
}
