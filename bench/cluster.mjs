// K instances against the one Firestore emulator: K function servers (bench/server.mjs) and K
// reservation workers (bench/worker.mjs), each a forked process with its own Firestore client and
// LocalLocks. The parent spreads requests round-robin over the live ones, asks them all for their
// counters (summed by the caller), and can kill -9 one server (the crash scenario).

import { fork } from "node:child_process";
import path from "node:path";
import { ROOT } from "./common.mjs";

/** One forked process with a request/answer IPC channel (answers matched by id). */
export class Child {
  constructor(file, { label, env }) {
    this.label = label;
    this.file = file;
    this.env = env;
    this.proc = null;
    this.pending = new Map();
    this.seq = 0;
    this.ready = null;
    this.expectedExit = false;
    this.dead = false;
    /** The latest stats answer: what a killed process is taken to have reported last. */
    this.lastStats = null;
  }

  get pid() {
    return this.proc?.pid ?? null;
  }

  async start(timeoutMs = 60_000) {
    // BENCH_PROF=/dir: the function servers and reservation workers write V8 CPU profiles there (read
    // them with DevTools).
    const profile = process.env.BENCH_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [];
    this.proc = fork(this.file, [], { execArgv: profile, env: this.env, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.proc.on("message", (m) => {
      const waiter = m?.id !== undefined ? this.pending.get(m.id) : undefined;
      if (waiter) {
        this.pending.delete(m.id);
        waiter.resolve(m);
      }
    });
    this.proc.on("exit", (code, signal) => {
      this.dead = true;
      for (const waiter of this.pending.values()) waiter.reject(new Error(`${this.label} exited (code ${code}, signal ${signal})`));
      this.pending.clear();
      if (!this.expectedExit) {
        console.error(`${this.label} died (code ${code}, signal ${signal})`);
        process.exitCode = 1;
      }
    });
    this.ready = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.label} did not start within ${timeoutMs / 1000} s`)), timeoutMs);
      this.proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${this.label} exited with code ${code} before it was ready`));
      });
      const onReady = (m) => {
        if (m?.type === "ready") {
          clearTimeout(timer);
          this.proc.off("message", onReady);
          resolve(m);
        }
      };
      this.proc.on("message", onReady);
    });
    return this.ready;
  }

  /** Sends `message` with a fresh id; resolves the child's answer carrying that id. */
  ask(message, timeoutMs = 10_000) {
    if (this.dead) return Promise.reject(new Error(`${this.label} is dead`));
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = timeoutMs > 0 ? setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.label} did not answer ${message.type} within ${timeoutMs} ms`));
      }, timeoutMs) : null;
      this.pending.set(id, {
        resolve: (m) => {
          if (timer) clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          if (timer) clearTimeout(timer);
          reject(e);
        },
      });
      try {
        this.proc.send({ ...message, id });
      } catch (error) {
        this.pending.delete(id);
        if (timer) clearTimeout(timer);
        reject(error);
      }
    });
  }

  /** Stats of one function (servers) or of the worker; a dead child answers with its last stats. */
  async stats(name, { reset = false } = {}) {
    if (this.dead) {
      // Its per-phase figures count once, in the phase it died in; its cumulative totals stay.
      const last = this.lastStats;
      if (reset && last) this.lastStats = { ...last, byStatus: {}, byResult: {}, durations: [], lastErrors: [] };
      return last;
    }
    const s = await this.ask({ type: "stats", name, reset });
    this.lastStats = reset ? { ...s, byStatus: {}, byResult: {}, durations: [], lastErrors: [] } : s;
    return s;
  }

  /** kill -9: no cleanup, no answer to what is in flight (the crash scenario). */
  kill9() {
    this.expectedExit = true;
    // Out of the rotation at once, as a load balancer that saw it go; `dead` follows with the exit event.
    this.killed = true;
    this.proc.kill("SIGKILL");
  }

  async stop() {
    this.expectedExit = true;
    if (!this.proc || this.dead || this.proc.exitCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once("exit", resolve));
    try {
      this.proc.send({ type: "stop" });
    } catch {
      // IPC already closed
    }
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

export class Cluster {
  constructor(instances, env) {
    this.instances = instances;
    this.servers = Array.from({ length: instances }, (_, i) => new Child(path.join(ROOT, "bench", "server.mjs"), { label: `function server ${i + 1}/${instances}`, env }));
    this.workers = Array.from({ length: instances }, (_, i) => new Child(path.join(ROOT, "bench", "worker.mjs"), { label: `reservation worker ${i + 1}/${instances}`, env }));
  }

  async start() {
    await Promise.all([...this.servers, ...this.workers].map((c) => c.start()));
    const knobs = this.servers[0].ready.knobs;
    return { knobs, ports: this.servers.map((s) => s.ready.ports) };
  }

  liveServers() {
    return this.servers.filter((s) => !s.dead && !s.killed);
  }

  /** Stats of every member of `group` ("servers" | "workers"), dead ones included (their last answer). */
  async stats(group, name, options) {
    return Promise.all(this[group].map((c) => c.stats(name, options)));
  }

  async stop() {
    await Promise.all([...this.servers, ...this.workers].map((c) => c.stop().catch(() => {})));
  }

  kill() {
    for (const c of [...this.servers, ...this.workers]) {
      if (!c.dead && c.proc) {
        c.expectedExit = true;
        c.proc.kill("SIGKILL");
      }
    }
  }
}
