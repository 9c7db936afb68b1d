#!/usr/bin/env node
// Runs the Firebase Emulator Suite for this repo without surprises:
//   - finds a Java >= 21 by itself (firebase-tools 15 refuses older ones),
//   - uses an installed Cloud Firestore emulator (gcloud SDK / apt package) through a tiny
//     launcher JAR, falling back to firebase-tools' own download when none is installed,
//   - fails with one clear sentence when something has to be installed.
//
//   - runs the local Stripe test-mode stand-in (functions/standin) beside the emulators on
//     127.0.0.1:12111 for both `start` and `exec`, and stops it with them.
//
// Usage:
//   node scripts/emulators.mjs exec [--only auth,firestore,functions] "<command>"
//   node scripts/emulators.mjs start          (seeds demo data, prints the Stripe banner, Ctrl-C stops)
//
// Env knobs: JAVA_HOME, FIRESTORE_EMULATOR_JAR (path to cloud-firestore-emulator.jar),
// FIRESTORE_EMULATOR_BINARY_PATH (used as-is when set), EMULATOR_UI=0 / CI (no Emulator UI on start),
// STRIPE_STANDIN=0 (no Stripe stand-in), STRIPE_STANDIN_PORT (default 12111),
// STRIPE_STANDIN_VERBOSE=1 (log every stand-in request during `exec` too).
//
// Importable: resolveEmulatorEnv() returns { env, javaHome, firestoreJar } for other scripts.
// Node built-ins only.

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const PROJECT_ID = "demo-stripe-orders";
export const DEFAULT_ONLY = ["auth", "firestore", "functions"];
export const MIN_JAVA_MAJOR = 21;

/** Emulators that firebase-tools runs on a JVM (its version check applies only to these). */
const JAVA_EMULATORS = new Set(["firestore", "database", "pubsub", "storage"]);
const FIRESTORE_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore";
const LAUNCHER_DIR = path.join(ROOT, ".emulators");
const LAUNCHER_JAR = path.join(LAUNCHER_DIR, "firestore-launcher.jar");
const IS_WINDOWS = process.platform === "win32";
const EXE = IS_WINDOWS ? ".exe" : "";

/** An environment problem the user must fix; `message` is the one sentence to show. */
export class EmulatorSetupError extends Error {
  constructor(message) {
    super(message);
    this.name = "EmulatorSetupError";
  }
}

// ---------------------------------------------------------------------------------------------
// Java discovery
// ---------------------------------------------------------------------------------------------

/** "1.8.0_392" -> 8, "17.0.15" -> 17, "25" -> 25, junk -> null. */
export function parseJavaMajor(version) {
  const m = /^(\d+)(?:\.(\d+))?/.exec(String(version ?? "").trim());
  if (!m) return null;
  const first = Number(m[1]);
  if (first === 1 && m[2] !== undefined) return Number(m[2]);
  return Number.isFinite(first) && first > 0 ? first : null;
}

/** Major version from a JDK/JRE home's `release` file, without starting a JVM (null if unknown). */
function releaseFileMajor(javaHome) {
  try {
    const text = fs.readFileSync(path.join(javaHome, "release"), "utf8");
    const m = /^JAVA_VERSION="?([^"\n]+)"?/m.exec(text);
    return m ? parseJavaMajor(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Runs `<javaBin> -XshowSettings:properties -version` and returns { javaHome, javaBin, major },
 * or null when the binary does not run.
 */
export function probeJava(javaBin) {
  let res;
  try {
    res = spawnSync(javaBin, ["-Duser.language=en", "-XshowSettings:properties", "-version"], {
      encoding: "utf8",
      timeout: 30_000,
      windowsHide: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch {
    return null;
  }
  if (res.error || res.status !== 0) return null;
  const out = `${res.stderr}\n${res.stdout}`;
  const home = /^\s*java\.home = (.+?)\s*$/m.exec(out)?.[1];
  const version = /^\s*java\.version = (.+?)\s*$/m.exec(out)?.[1] ?? /version "([^"]+)"/.exec(out)?.[1];
  const major = parseJavaMajor(version);
  if (!home || !major) return null;
  return { javaHome: home, javaBin: path.join(home, "bin", `java${EXE}`), major };
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function listDirs(dir) {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory() || d.isSymbolicLink())
      .map((d) => path.join(dir, d.name));
  } catch {
    return [];
  }
}

/** First executable named `name` on PATH (null if none). */
function which(name, env = process.env) {
  const exts = IS_WINDOWS ? (env.PATHEXT || ".EXE;.CMD;.BAT").split(";") : [""];
  for (const dir of (env.PATH || env.Path || "").split(path.delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        if (isFile(candidate)) return candidate;
      } catch {
        // not here
      }
    }
  }
  return null;
}

/** JDK homes in the usual install locations (not verified). */
function scannedJavaHomes(env) {
  const home = os.homedir();
  const homes = [];
  const globChildren = (dir, filter = () => true, suffix = "") =>
    listDirs(dir)
      .filter((d) => filter(path.basename(d)))
      .map((d) => (suffix ? path.join(d, suffix) : d));

  homes.push(...globChildren("/usr/lib/jvm"));
  homes.push(...globChildren("/opt/java"));
  homes.push(...globChildren("/opt", (n) => /jdk/i.test(n)));
  homes.push(...globChildren("/Library/Java/JavaVirtualMachines", () => true, "Contents/Home"));
  homes.push(...globChildren(path.join(home, "Library/Java/JavaVirtualMachines"), () => true, "Contents/Home"));
  homes.push(...globChildren(path.join(env.SDKMAN_DIR || path.join(home, ".sdkman"), "candidates", "java")));
  homes.push(...globChildren(path.join(home, ".jdks")));
  homes.push(...globChildren("/opt/homebrew/opt", (n) => n.startsWith("openjdk"), "libexec/openjdk.jdk/Contents/Home"));
  homes.push(...globChildren("/usr/local/opt", (n) => n.startsWith("openjdk"), "libexec/openjdk.jdk/Contents/Home"));
  if (IS_WINDOWS) {
    for (const base of [env.ProgramFiles, env["ProgramFiles(x86)"]].filter(Boolean)) {
      for (const vendor of ["Java", "Eclipse Adoptium", "Microsoft", "Zulu", "Amazon Corretto", "BellSoft"]) {
        homes.push(...globChildren(path.join(base, vendor)));
      }
    }
  }
  return homes;
}

/**
 * Finds a Java >= 21: JAVA_HOME, then `java` on PATH, then (macOS) /usr/libexec/java_home,
 * then the common JVM folders (highest version wins). Throws EmulatorSetupError when none fits.
 * @returns {{ javaHome: string, javaBin: string, major: number }}
 */
export function findJava({ env = process.env, minMajor = MIN_JAVA_MAJOR } = {}) {
  const seen = new Set();
  const tooOld = [];
  const accept = (info) => {
    if (!info) return null;
    if (info.major >= minMajor) return info;
    tooOld.push(`${info.major} at ${info.javaHome}`);
    return null;
  };
  const tryBin = (javaBin) => {
    let key;
    try {
      key = fs.realpathSync(javaBin);
    } catch {
      return null;
    }
    if (seen.has(key)) return null;
    seen.add(key);
    return accept(probeJava(javaBin));
  };

  if (env.JAVA_HOME) {
    const found = tryBin(path.join(env.JAVA_HOME, "bin", `java${EXE}`));
    if (found) return found;
  }
  const onPath = which("java", env);
  if (onPath) {
    const found = tryBin(onPath);
    if (found) return found;
  }
  if (process.platform === "darwin" && isFile("/usr/libexec/java_home")) {
    const res = spawnSync("/usr/libexec/java_home", ["-v", `${minMajor}+`], { encoding: "utf8", timeout: 10_000 });
    const home = res.status === 0 ? res.stdout.trim() : "";
    if (home) {
      const found = tryBin(path.join(home, "bin", "java"));
      if (found) return found;
    }
  }

  // Scan the usual folders; order by the `release` file version (cheap), verify by running java.
  const candidates = [];
  for (const home of scannedJavaHomes(env)) {
    const bin = path.join(home, "bin", `java${EXE}`);
    if (!isFile(bin)) continue;
    candidates.push({ bin, major: releaseFileMajor(home) ?? 0 });
  }
  candidates.sort((a, b) => b.major - a.major);
  for (const { bin, major } of candidates) {
    if (major !== 0 && major < minMajor) {
      // Known too old from its release file: record without starting a JVM.
      let key;
      try {
        key = fs.realpathSync(bin);
      } catch {
        continue;
      }
      if (!seen.has(key)) {
        seen.add(key);
        tooOld.push(`${major} at ${path.dirname(path.dirname(bin))}`);
      }
      continue;
    }
    const found = tryBin(bin);
    if (found) return found;
  }

  const foundText = tooOld.length ? ` (found only Java ${[...new Set(tooOld)].join(", ")})` : "";
  throw new EmulatorSetupError(
    `No Java ${minMajor} or newer was found in JAVA_HOME, on PATH or in the usual JDK folders${foundText}: ` +
      `install a JDK ${minMajor}+ (e.g. \`apt-get install openjdk-21-jdk-headless\` or Temurin ${minMajor}+) ` +
      `and put it on PATH or set JAVA_HOME.`,
  );
}

// ---------------------------------------------------------------------------------------------
// Firestore emulator discovery
// ---------------------------------------------------------------------------------------------

const SDK_JAR = path.join("platform", "cloud-firestore-emulator", "cloud-firestore-emulator.jar");

/** gcloud SDK roots worth checking, most specific first (gcloud info only as a last resort). */
function* gcloudSdkRoots(env) {
  if (env.CLOUDSDK_ROOT_DIR) yield env.CLOUDSDK_ROOT_DIR;
  const gcloud = which("gcloud", env);
  if (gcloud) {
    // <sdk>/bin/gcloud, usually reached through a symlink such as /usr/bin/gcloud.
    try {
      yield path.dirname(path.dirname(fs.realpathSync(gcloud)));
    } catch {
      // broken symlink
    }
  }
  yield "/usr/lib/google-cloud-sdk";
  yield "/usr/share/google-cloud-sdk";
  yield path.join(os.homedir(), "google-cloud-sdk");
  yield "/opt/homebrew/share/google-cloud-sdk";
  yield "/usr/local/share/google-cloud-sdk";
  yield "/snap/google-cloud-cli/current";
  yield "/snap/google-cloud-sdk/current";
  if (gcloud) {
    const res = spawnSync(gcloud, ["info", "--format=value(installation.sdk_root)"], {
      encoding: "utf8",
      timeout: 30_000,
      windowsHide: true,
      shell: IS_WINDOWS,
      stdio: ["ignore", "pipe", "ignore"],
    });
    const root = res.status === 0 ? res.stdout.trim() : "";
    if (root) yield root;
  }
}

/**
 * An installed cloud-firestore-emulator.jar: FIRESTORE_EMULATOR_JAR if set (must exist), else the
 * one in a gcloud SDK. Returns null when none is installed.
 */
export function findInstalledFirestoreJar(env = process.env) {
  if (env.FIRESTORE_EMULATOR_JAR) {
    const jar = path.resolve(env.FIRESTORE_EMULATOR_JAR);
    if (!isFile(jar)) {
      throw new EmulatorSetupError(
        `FIRESTORE_EMULATOR_JAR is set to ${jar}, which is not a file: point it at an installed ` +
          `cloud-firestore-emulator.jar (e.g. /usr/lib/google-cloud-sdk/${SDK_JAR.split(path.sep).join("/")}) or unset it.`,
      );
    }
    return jar;
  }
  for (const root of gcloudSdkRoots(env)) {
    const jar = path.join(root, SDK_JAR);
    if (isFile(jar)) return jar;
  }
  return null;
}

/** firebase-tools' emulator cache folder. */
function firebaseCacheDir(env) {
  return env.FIREBASE_EMULATORS_PATH || path.join(os.homedir(), ".cache", "firebase", "emulators");
}

function downloadableEmulatorInfo() {
  try {
    return JSON.parse(
      fs.readFileSync(path.join(ROOT, "node_modules", "firebase-tools", "lib", "emulator", "downloadableEmulatorInfo.json"), "utf8"),
    );
  } catch {
    return null;
  }
}

/** The Firestore emulator jar firebase-tools would use from its cache, or null if not downloaded yet. */
export function firebaseCachedFirestoreJar(env = process.env) {
  const cacheDir = firebaseCacheDir(env);
  let fileName = null;
  if (env.FIRESTORE_EMULATOR_VERSION) {
    fileName = `cloud-firestore-emulator-v${env.FIRESTORE_EMULATOR_VERSION}.jar`;
  } else {
    fileName = downloadableEmulatorInfo()?.firestore?.downloadPathRelativeToCacheDir ?? null;
  }
  if (fileName) return isFile(path.join(cacheDir, fileName)) ? path.join(cacheDir, fileName) : null;
  // Unknown expected version: any cached jar is better than nothing.
  try {
    const any = fs.readdirSync(cacheDir).filter((n) => /^cloud-firestore-emulator-.*\.jar$/.test(n)).sort().pop();
    return any ? path.join(cacheDir, any) : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Launcher JAR (a zip holding only META-INF/MANIFEST.MF), written without the `jar` tool
// ---------------------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(buf) {
  let crc = 0xffffffff;
  for (let i = 0; i < buf.length; i++) crc = CRC_TABLE[(crc ^ buf[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** A zip archive of stored (uncompressed) entries; fixed timestamps so output is deterministic. */
export function buildZip(entries) {
  const DOS_TIME = 0; // 00:00:00
  const DOS_DATE = (0 << 9) | (1 << 5) | 1; // 1980-01-01
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const nameBuf = Buffer.from(name, "utf8");
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(10, 4); // version needed
    local.writeUInt16LE(0x0800, 6); // flags: UTF-8 names
    local.writeUInt16LE(0, 8); // method: stored
    local.writeUInt16LE(DOS_TIME, 10);
    local.writeUInt16LE(DOS_DATE, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, nameBuf, data);

    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4); // version made by
    central.writeUInt16LE(10, 6); // version needed
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt16LE(DOS_TIME, 12);
    central.writeUInt16LE(DOS_DATE, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBuf.length, 28);
    central.writeUInt16LE(0, 30); // extra
    central.writeUInt16LE(0, 32); // comment
    central.writeUInt16LE(0, 34); // disk
    central.writeUInt16LE(0, 36); // internal attrs
    central.writeUInt32LE(0, 38); // external attrs
    central.writeUInt32LE(offset, 42);
    centrals.push(central, nameBuf);

    offset += local.length + nameBuf.length + data.length;
  }
  const centralSize = centrals.reduce((n, b) => n + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(0, 4);
  end.writeUInt16LE(0, 6);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  end.writeUInt16LE(0, 20);
  return Buffer.concat([...locals, ...centrals, end]);
}

/** One manifest header, wrapped at 72 bytes per line (continuations start with one space). */
function manifestHeader(name, value) {
  const bytes = Buffer.from(`${name}: ${value}`, "utf8");
  const lines = [];
  let start = 0;
  let max = 72;
  while (start < bytes.length) {
    let end = Math.min(start + max, bytes.length);
    // Never split a UTF-8 sequence (continuation bytes are 10xxxxxx).
    while (end < bytes.length && end > start + 1 && (bytes[end] & 0xc0) === 0x80) end--;
    lines.push((lines.length ? " " : "") + bytes.subarray(start, end).toString("utf8"));
    start = end;
    max = 71;
  }
  return lines.map((l) => `${l}\r\n`).join("");
}

export function launcherManifest(targetJar) {
  // Class-Path entries are space-separated URLs: a file URL escapes spaces and other specials.
  return (
    manifestHeader("Manifest-Version", "1.0") +
    manifestHeader("Created-By", "stripe-orders scripts/emulators.mjs") +
    manifestHeader("Main-Class", FIRESTORE_MAIN_CLASS) +
    manifestHeader("Class-Path", pathToFileURL(targetJar).href) +
    "\r\n"
  );
}

/**
 * Writes .emulators/firestore-launcher.jar pointing at `targetJar` (rewritten only when its bytes
 * would change, e.g. the target moved). firebase-tools runs it with `java -jar`.
 */
export function ensureLauncherJar(targetJar, launcherPath = LAUNCHER_JAR) {
  const bytes = buildZip([{ name: "META-INF/MANIFEST.MF", data: Buffer.from(launcherManifest(targetJar), "utf8") }]);
  let current = null;
  try {
    current = fs.readFileSync(launcherPath);
  } catch {
    current = null;
  }
  if (!current || !current.equals(bytes)) {
    fs.mkdirSync(path.dirname(launcherPath), { recursive: true });
    const tmp = `${launcherPath}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, launcherPath);
  }
  return launcherPath;
}

// ---------------------------------------------------------------------------------------------
// firebase-tools
// ---------------------------------------------------------------------------------------------

/** [node, firebase-tools entry script] of the repo's own firebase-tools. */
export function firebaseCommand() {
  const bin = path.join(ROOT, "node_modules", ".bin", "firebase");
  let script = null;
  try {
    const real = fs.realpathSync(bin);
    if (real.endsWith(".js")) script = real;
  } catch {
    // fall through
  }
  script ??= path.join(ROOT, "node_modules", "firebase-tools", "lib", "bin", "firebase.js");
  if (!isFile(script)) {
    throw new EmulatorSetupError("firebase-tools is not installed in this repo: run `npm install` at the repo root first.");
  }
  return [process.execPath, script];
}

function downloadFailure(logFile) {
  return new EmulatorSetupError(
    "The Cloud Firestore emulator is not installed and firebase-tools could not download it: install " +
      "`google-cloud-cli-firestore-emulator` (apt) or run `gcloud components install cloud-firestore-emulator`, " +
      "or allow internet access so firebase-tools can download it" +
      (logFile ? ` (download log: ${path.relative(process.cwd(), logFile) || logFile}).` : "."),
  );
}

/**
 * Java + Firestore emulator environment for firebase-tools.
 * @param {{ only?: string[], env?: NodeJS.ProcessEnv, download?: boolean, quiet?: boolean }} [opts]
 *   only: emulators that will run (Java is resolved only if one of them needs it);
 *   download: when no emulator is installed or cached, let firebase-tools download it now (default true).
 * @returns {{ env: NodeJS.ProcessEnv, javaHome: string|null, firestoreJar: string|null, launcherJar: string|null }}
 *   firestoreJar is the installed jar in use, or null when firebase-tools uses its own download.
 */
export function resolveEmulatorEnv({ only = DEFAULT_ONLY, env: baseEnv = process.env, download = true, quiet = false } = {}) {
  const env = { ...baseEnv };
  const result = { env, javaHome: null, firestoreJar: null, launcherJar: null };
  const log = (msg) => {
    if (!quiet) process.stderr.write(`[emulators] ${msg}\n`);
  };

  if (!only.some((e) => JAVA_EMULATORS.has(e))) return result;

  const java = findJava({ env: baseEnv });
  result.javaHome = java.javaHome;
  env.JAVA_HOME = java.javaHome;
  const pathKey = Object.keys(env).find((k) => k.toUpperCase() === "PATH") ?? "PATH";
  env[pathKey] = [path.join(java.javaHome, "bin"), env[pathKey]].filter(Boolean).join(path.delimiter);
  log(`Java ${java.major}: ${java.javaHome}`);

  if (!only.includes("firestore")) return result;

  if (baseEnv.FIRESTORE_EMULATOR_BINARY_PATH) {
    // Caller chose the binary for firebase-tools directly; respect it.
    result.firestoreJar = baseEnv.FIRESTORE_EMULATOR_BINARY_PATH;
    log(`Firestore emulator: FIRESTORE_EMULATOR_BINARY_PATH=${baseEnv.FIRESTORE_EMULATOR_BINARY_PATH}`);
    return result;
  }

  const installed = findInstalledFirestoreJar(baseEnv);
  if (installed) {
    result.firestoreJar = installed;
    result.launcherJar = ensureLauncherJar(installed);
    env.FIRESTORE_EMULATOR_BINARY_PATH = result.launcherJar;
    log(`Firestore emulator: ${installed} (via ${path.relative(ROOT, result.launcherJar)})`);
    return result;
  }

  const cached = firebaseCachedFirestoreJar(baseEnv);
  if (cached) {
    log(`Firestore emulator: firebase-tools cache ${cached}`);
    return result;
  }
  if (!download) {
    log("Firestore emulator: not installed; firebase-tools will try to download it");
    return result;
  }

  // Preflight the download so that an offline machine gets one clear sentence, not a stack trace.
  log("Firestore emulator: not installed, downloading it (~140 MB, once) with `firebase setup:emulators:firestore`...");
  const [node, firebase] = firebaseCommand();
  const res = spawnSync(node, [firebase, "setup:emulators:firestore"], {
    cwd: ROOT,
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    windowsHide: true,
  });
  if (res.status !== 0 || !firebaseCachedFirestoreJar(baseEnv)) {
    let logFile = null;
    try {
      fs.mkdirSync(LAUNCHER_DIR, { recursive: true });
      logFile = path.join(LAUNCHER_DIR, "firestore-download.log");
      fs.writeFileSync(logFile, `${res.error ? `${res.error}\n` : ""}${res.stdout ?? ""}${res.stderr ?? ""}`);
    } catch {
      logFile = null;
    }
    throw downloadFailure(logFile);
  }
  log(`Firestore emulator: downloaded to ${firebaseCachedFirestoreJar(baseEnv)}`);
  return result;
}

/**
 * True when the Emulator UI is in firebase-tools' cache or can be downloaded now (a quick
 * `firebase setup:emulators:ui`, which fails within seconds when offline).
 */
export function ensureEmulatorUi(env = process.env) {
  const rel = downloadableEmulatorInfo()?.ui?.main?.binaryPathRelativeToCacheDir;
  if (rel && isFile(path.join(firebaseCacheDir(env), rel))) return true;
  const [node, firebase] = firebaseCommand();
  const res = spawnSync(node, [firebase, "setup:emulators:ui"], {
    cwd: ROOT,
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    windowsHide: true,
  });
  return res.status === 0;
}

// ---------------------------------------------------------------------------------------------
// Running firebase-tools with clean signal handling
// ---------------------------------------------------------------------------------------------

const SIGNAL_NUMBERS = os.constants.signals;

function readCmdline(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return null;
  }
}

/** Linux: the java processes firebase-tools spawned (they run in their own process group). */
function javaChildrenOf(pid) {
  const found = [];
  let tasks = [];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return found;
  }
  for (const task of tasks) {
    let kids = [];
    try {
      kids = fs.readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").split(/\s+/).filter(Boolean);
    } catch {
      continue;
    }
    for (const kid of kids) {
      const cmdline = readCmdline(kid);
      if (cmdline && /(^|\/)java\0/.test(cmdline)) found.push({ pid: Number(kid), cmdline });
    }
  }
  return found;
}

/** Stops emulator JVMs that outlived firebase-tools (only if it crashed or was force-killed). */
async function stopLeftoverJava(tracked) {
  const alive = [...tracked].filter(([pid, cmdline]) => readCmdline(pid) === cmdline).map(([pid]) => pid);
  if (alive.length === 0) return;
  process.stderr.write(`[emulators] Stopping emulator process(es) left behind by firebase-tools: ${alive.join(", ")}\n`);
  for (const pid of alive) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
  }
  for (let i = 0; i < 30 && alive.some((pid) => readCmdline(pid) === tracked.get(pid)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const pid of alive) {
    if (readCmdline(pid) === tracked.get(pid)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
}

/**
 * Runs `firebase <args>` and resolves with its exit code. On POSIX firebase-tools gets its own
 * process group: the first SIGINT/SIGTERM/SIGHUP we receive is forwarded to it exactly once (it
 * then stops the emulators, including the detached java process, cleanly), and whatever is left
 * in its group afterwards (the exec'd command, function workers) is terminated.
 */
function runFirebase(args, env, { onSignal } = {}) {
  const [node, firebase] = firebaseCommand();
  const detached = !IS_WINDOWS;
  const child = spawn(node, [firebase, ...args], {
    cwd: ROOT,
    env,
    // A background process group must not read the terminal: stdin is not shared.
    stdio: [detached ? "ignore" : "inherit", "inherit", "inherit"],
    detached,
    windowsHide: true,
  });

  let forwarded = null;
  let forceTimer = null;
  // Remember the emulator JVMs while firebase-tools runs, to clean them up should it die uncleanly.
  const trackedJava = new Map();
  const trackTimer =
    process.platform === "linux"
      ? setInterval(() => {
          for (const { pid, cmdline } of javaChildrenOf(child.pid)) trackedJava.set(pid, cmdline);
        }, 1000)
      : null;
  trackTimer?.unref();
  const killGroup = (signal) => {
    try {
      if (detached) process.kill(-child.pid, signal);
      else child.kill(signal);
    } catch {
      // already gone
    }
  };
  const handlers = {};
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    handlers[signal] = () => {
      onSignal?.(signal);
      if (!forwarded) {
        forwarded = signal;
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
        // firebase-tools waits ~4 s per emulator; do not hang forever if it wedges.
        forceTimer = setTimeout(() => {
          process.stderr.write("[emulators] firebase-tools did not stop in 60 s; killing it.\n");
          killGroup("SIGKILL");
        }, 60_000);
        forceTimer.unref();
      } else {
        process.stderr.write("[emulators] Still shutting the emulators down cleanly, please wait...\n");
      }
    };
    process.on(signal, handlers[signal]);
  }

  return new Promise((resolve) => {
    child.once("error", (err) => {
      process.stderr.write(`[emulators] Could not start firebase-tools: ${err.message}\n`);
    });
    child.once("close", async (code, signal) => {
      if (forceTimer) clearTimeout(forceTimer);
      if (trackTimer) clearInterval(trackTimer);
      // Leftovers in firebase-tools' group (e.g. the exec'd command after a signal).
      if (detached) killGroup("SIGTERM");
      await stopLeftoverJava(trackedJava);
      for (const [signal_, handler] of Object.entries(handlers)) process.off(signal_, handler);
      resolve({
        code: code ?? (signal ? 128 + (SIGNAL_NUMBERS[signal] ?? 1) : 1),
        signal: forwarded,
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The local Stripe stand-in (functions/standin)
// ---------------------------------------------------------------------------------------------

export const STANDIN_HOST = "127.0.0.1";
const STANDIN_ENTRY = path.join(ROOT, "functions", "standin", "main.ts");
const FUNCTIONS_EMULATOR_PORT = 5001;

/** The first STRIPE_WEBHOOK_SECRET of functions/.secret.local (the one the emulated function checks). */
export function emulatorWebhookSecret() {
  const file = path.join(ROOT, "functions", ".secret.local");
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw new EmulatorSetupError(`${path.relative(ROOT, file)} is missing: it holds the emulator's STRIPE_WEBHOOK_SECRET.`);
  }
  const value = /^\s*STRIPE_WEBHOOK_SECRET\s*=\s*(.*)$/m.exec(text)?.[1] ?? "";
  const first = value.trim().replace(/^["']|["']$/g, "").split(",")[0].trim();
  if (!first) throw new EmulatorSetupError(`${path.relative(ROOT, file)} has no STRIPE_WEBHOOK_SECRET value.`);
  return first;
}

function standInPort(env) {
  const text = env.STRIPE_STANDIN_PORT ?? "12111";
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new EmulatorSetupError(`STRIPE_STANDIN_PORT=${text} is not a port number.`);
  }
  return port;
}

/** Resolves when `port` can be listened on, else throws the one sentence to show. */
function assertPortFree(port, host) {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", (err) => {
      reject(
        err.code === "EADDRINUSE"
          ? new EmulatorSetupError(
              `Port ${port} on ${host} (the local Stripe stand-in) is already in use: another \`npm start\` or ` +
                `emulators run may still be running (wrap runs in \`flock /tmp/emulators.lock\`); stop it, or set ` +
                `STRIPE_STANDIN_PORT (and STRIPE_API_PORT in functions/.env.local), or STRIPE_STANDIN=0 to run without it.`,
            )
          : err,
      );
    });
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

async function waitForStandIn(url, child, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new EmulatorSetupError(`The local Stripe stand-in exited before it was ready (${child.exitCode ?? child.signalCode}); see its output above.`);
    }
    try {
      const res = await fetch(`${url}/__standin/health`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new EmulatorSetupError(`The local Stripe stand-in did not answer on ${url} within ${timeoutMs / 1000} s.`);
}

/**
 * Starts functions/standin/main.ts with the functions' tsx and waits until it answers. Returns
 * { url, stop() }, or null when STRIPE_STANDIN=0. The child exits by itself when our process
 * dies, however it dies: it watches the pipe on its stdin.
 */
export async function startStripeStandIn({ env = process.env, quiet = false } = {}) {
  if (env.STRIPE_STANDIN === "0") {
    process.stderr.write("[emulators] STRIPE_STANDIN=0: the local Stripe stand-in is not started.\n");
    return null;
  }
  const port = standInPort(env);
  await assertPortFree(port, STANDIN_HOST);
  let tsx;
  try {
    tsx = createRequire(path.join(ROOT, "functions", "package.json")).resolve("tsx");
  } catch {
    throw new EmulatorSetupError("tsx is not installed in functions/: run `npm install` at the repo root first.");
  }
  const child = spawn(process.execPath, ["--import", pathToFileURL(tsx).href, STANDIN_ENTRY], {
    cwd: ROOT,
    env: {
      ...env,
      STRIPE_STANDIN_PORT: String(port),
      STRIPE_STANDIN_HOST: STANDIN_HOST,
      STRIPE_STANDIN_WEBHOOK_URL:
        env.STRIPE_STANDIN_WEBHOOK_URL ?? `http://127.0.0.1:${FUNCTIONS_EMULATOR_PORT}/${PROJECT_ID}/us-central1/stripeWebhook`,
      STRIPE_STANDIN_WEBHOOK_SECRET: env.STRIPE_STANDIN_WEBHOOK_SECRET ?? emulatorWebhookSecret(),
      STRIPE_STANDIN_EXIT_WITH_STDIN: "1",
      ...(quiet && env.STRIPE_STANDIN_VERBOSE !== "1" ? { STRIPE_STANDIN_QUIET: "1" } : {}),
    },
    stdio: ["pipe", "inherit", "inherit"],
    windowsHide: true,
  });
  let stopping = false;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.once("exit", (code, signal) => {
    if (!stopping) process.stderr.write(`[emulators] The local Stripe stand-in stopped unexpectedly (${code ?? signal}).\n`);
  });
  child.once("error", (err) => process.stderr.write(`[emulators] Could not start the Stripe stand-in: ${err.message}\n`));
  const url = `http://${STANDIN_HOST}:${port}`;
  const stop = async () => {
    stopping = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
  };
  try {
    await waitForStandIn(url, child);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, stop };
}

/** Runs `body(env)` with the stand-in beside it (its URL in STRIPE_STANDIN_URL), stopping it afterwards. */
async function withStandIn(env, { quiet }, body) {
  const standIn = await startStripeStandIn({ env, quiet });
  try {
    return await body(standIn ? { ...env, STRIPE_STANDIN_URL: standIn.url } : env);
  } finally {
    await standIn?.stop();
  }
}

function parseArgs(argv) {
  const [mode, ...rest] = argv;
  let only = null;
  const positional = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === "--") {
      positional.push(...rest.slice(i + 1));
      break;
    } else if (a === "--only") {
      only = rest[++i];
    } else if (a.startsWith("--only=")) {
      only = a.slice("--only=".length);
    } else {
      positional.push(a);
    }
  }
  const onlyList = only
    ? only
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : DEFAULT_ONLY;
  return { mode, only: onlyList, positional };
}

/** Joins argv items into one shell command (single items are taken verbatim). */
function toShellCommand(items) {
  if (items.length === 1) return items[0];
  return items.map((s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)).join(" ");
}

const USAGE =
  'Usage:\n  node scripts/emulators.mjs exec [--only auth,firestore,functions] "<command>"\n' +
  "  node scripts/emulators.mjs start\n";

async function cmdExec({ only, positional }) {
  if (positional.length === 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  const { env: emulatorEnv } = resolveEmulatorEnv({ only });
  const args = ["emulators:exec", "--project", PROJECT_ID, "--only", only.join(","), toShellCommand(positional)];
  return withStandIn(emulatorEnv, { quiet: true }, async (env) => {
    const { code, signal } = await runFirebase(args, env);
    // Interrupted runs never count as a success, whatever firebase-tools returned.
    return signal && code === 0 ? 128 + (SIGNAL_NUMBERS[signal] ?? 1) : code;
  });
}

async function cmdStart({ only }) {
  const { env: emulatorEnv } = resolveEmulatorEnv({ only });
  return withStandIn(emulatorEnv, { quiet: false }, (env) => startEmulators(env, only));
}

async function startEmulators(env, only) {
  let wantUi = !process.env.CI && process.env.EMULATOR_UI !== "0";
  if (wantUi && !ensureEmulatorUi(env)) {
    process.stderr.write(
      "[emulators] The Emulator UI is not downloaded and cannot be downloaded now (offline?); starting without it.\n",
    );
    wantUi = false;
  }
  fs.mkdirSync(LAUNCHER_DIR, { recursive: true });
  const readyFile = path.join(LAUNCHER_DIR, `start-${process.pid}.ready`);
  const script = `node scripts/seed.mjs --serve --ready-file ${JSON.stringify(path.relative(ROOT, readyFile))}`;

  for (;;) {
    fs.rmSync(readyFile, { force: true });
    let interrupted = false;
    const args = ["emulators:exec", "--project", PROJECT_ID, "--only", only.join(","), ...(wantUi ? ["--ui"] : []), script];
    const { code } = await runFirebase(args, env, { onSignal: () => (interrupted = true) });
    const bannerShown = fs.existsSync(readyFile);
    fs.rmSync(readyFile, { force: true });
    if (wantUi && !bannerShown && !interrupted && code !== 0) {
      process.stderr.write(
        "[emulators] The emulators did not start with the Emulator UI requested; retrying once without it " +
          "(set EMULATOR_UI=0 to skip the UI).\n",
      );
      wantUi = false;
      continue;
    }
    return interrupted ? 0 : code;
  }
}

export async function main(argv = process.argv.slice(2)) {
  const parsed = parseArgs(argv);
  try {
    if (parsed.mode === "exec") return await cmdExec(parsed);
    if (parsed.mode === "start") return await cmdStart(parsed);
    process.stderr.write(USAGE);
    return 2;
  } catch (err) {
    if (err instanceof EmulatorSetupError) {
      process.stderr.write(`\n[emulators] ${err.message}\n\n`);
      return 1;
    }
    throw err;
  }
}

const isEntryPoint = (() => {
  try {
    return process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
})();

if (isEntryPoint) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`[emulators] ${err?.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
