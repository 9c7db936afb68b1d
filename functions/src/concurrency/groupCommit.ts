import type { DocumentData, DocumentReference, DocumentSnapshot, Firestore, Query, QuerySnapshot } from "firebase-admin/firestore";
import {
  DEFAULT_OPTIMISTIC,
  isConflict,
  OptimisticTransaction,
  ReadConflict,
  runOptimistic,
  sameVersion,
  type Guard,
  type OptimisticOptions,
  type OptimisticStats,
  type Reader,
  type TransactionBody,
} from "./optimistic";

export type { TransactionBody, TransactionLike } from "./optimistic";

/** Why a shared commit failed (its members then ran alone): for the instance's log. */
export interface GroupFailure {
  members: number;
  code: string | number | null;
  message: string;
}

export interface GroupCommitOptions {
  /** Off: every transaction runs alone (the bench's knob; also what a single arrival does anyway). */
  enabled: boolean;
  /** Most transactions one commit carries (a commit holds at most 500 writes; ours write about 6 each). */
  maxMembers: number;
  /** Shared commits running at once; further arrivals gather into the next group meanwhile. */
  maxInFlight: number;
  /** A round of reads goes out after this long even if a member is still busy elsewhere. */
  readRoundMs: number;
  optimistic: OptimisticOptions;
  onGroupFailure?: (failure: GroupFailure) => void;
}

export const DEFAULT_GROUP_COMMIT: GroupCommitOptions = { enabled: true, maxMembers: 24, maxInFlight: 2, readRoundMs: 25, optimistic: DEFAULT_OPTIMISTIC };

/** Writes one commit may carry, with room under Firestore's 500 (a transform can count as one more). */
const MAX_WRITES = 400;

/**
 * Group commit: the optimistic transactions (see OptimisticTransaction) that the concurrent requests of
 * one instance start together share their round trips. Each member still reads what it reads and decides
 * alone, but the reads of a round go out as one `getAll` and the writes of all members in one atomic
 * batch, each write guarded by the version its member read, so a burst of N webhook deliveries costs a
 * few round trips instead of 3N. Round trips are what bound throughput when Firestore and the function
 * share a few CPUs (gRPC, the runtime's per-request bookkeeping), not documents.
 *
 * A member's outcome is one it could have had alone:
 * - its writes commit together or not at all, each guarded by the version of what it read;
 * - a member that throws writes nothing, and a write Firestore would refuse throws in its own body;
 * - members whose documents overlap never commit together: a member that writes a document an earlier
 *   accepted member read or wrote, or reads one it wrote, is left out and runs alone after the commit;
 * - when the shared commit loses a race with another instance (a guard no longer holds), one lock-free
 *   read of every member's guards finds the members it was about: they run alone, and the others commit
 *   together once more. Any other failure, or a second conflict, runs every member alone.
 */
export class GroupCommit {
  private readonly waiting: Member[][] = [];
  private inFlight = 0;
  /**
   * Counters for tests and diagnostics: shared commits (`groups`, of `members` members, `failedGroups` of
   * them failed), members left out of a commit for overlapping (`overlaps`), members run `alone` (a lone
   * arrival, or a member left out), read `rounds`, conflicts and what they cost: `pruned` members sent
   * alone after a conflict; and the optimistic runs of members alone (`commits`, `conflicts`).
   */
  readonly stats = { groups: 0, members: 0, failedGroups: 0, overlaps: 0, alone: 0, rounds: 0, timedRounds: 0, pruned: 0, retriedGroups: 0, commits: 0, conflicts: 0 };

  constructor(
    private readonly db: Firestore,
    private readonly options: GroupCommitOptions = DEFAULT_GROUP_COMMIT,
  ) {}

  /** Runs `body` as (part of) a transaction; resolves with its result once its writes are committed. */
  run<T>(body: TransactionBody<T>): Promise<T> {
    if (!this.options.enabled) return this.runAlone(body);
    return new Promise<T>((resolve, reject) => {
      const member: Member = { body, resolve: (value) => resolve(value as T), reject };
      const open = this.waiting.at(-1);
      if (open !== undefined && open.length < this.options.maxMembers) {
        open.push(member);
        return;
      }
      this.waiting.push([member]);
      // The requests of one burst arrive in the same turn of the event loop: let them gather first.
      if (this.inFlight < this.options.maxInFlight) setImmediate(() => this.startNext());
    });
  }

  private runAlone<T>(body: TransactionBody<T>): Promise<T> {
    this.stats.alone++;
    return runOptimistic(this.db, body, this.options.optimistic, this.stats);
  }

  private startNext(): void {
    if (this.inFlight >= this.options.maxInFlight) return;
    const members = this.waiting.shift();
    if (members === undefined) return;
    this.inFlight++;
    void this.drive(members);
  }

  private async drive(members: Member[]): Promise<void> {
    // Should execute() ever fail unexpectedly, nothing was delivered yet: every member runs alone.
    let alone = members;
    try {
      alone = await this.execute(members);
    } finally {
      // The slot is free before the members left over run alone: their retries hold up no one.
      this.inFlight--;
      this.startNext();
      for (const member of alone) void this.alone(member);
    }
  }

  /** Runs one group; never rejects. Returns the members that must run alone. */
  private async execute(members: Member[]): Promise<Member[]> {
    if (members.length === 1) return members;
    this.stats.groups++;
    this.stats.members += members.length;
    let attempt: { accepted: Accepted[]; leftOut: Member[] };
    try {
      attempt = await this.runBodies(members);
    } catch (error) {
      this.fail(members.length, error);
      return members;
    }
    // Members whose body threw wrote nothing: they get their error once the group is done, as alone.
    const threw = members.filter((m) => m.outcome?.ok === false && !attempt.leftOut.includes(m));
    const alone = await this.commitAccepted(members.length, attempt.accepted, attempt.leftOut);
    for (const member of threw) if (member.outcome !== undefined) settle(member, member.outcome);
    return alone;
  }

  /**
   * Commits the accepted members' writes in one batch. On a conflict with another instance, one
   * lock-free read of every guard finds whose decision went stale: those run alone, the others commit
   * together once more. Returns the members that must run alone.
   */
  private async commitAccepted(size: number, first: Accepted[], leftOut: Member[]): Promise<Member[]> {
    let accepted = first;
    for (let commit = 1; accepted.length > 0; commit++) {
      try {
        await this.commit(accepted);
        break;
      } catch (error) {
        if (!isConflict(error) || commit > 1) {
          this.fail(size, error);
          return [...accepted.map((a) => a.member), ...leftOut];
        }
        let stale: Accepted[];
        try {
          stale = await this.staleMembers(accepted);
        } catch (readError) {
          this.fail(size, readError);
          return [...accepted.map((a) => a.member), ...leftOut];
        }
        this.stats.retriedGroups++;
        this.stats.pruned += stale.length;
        // No guard moved (a conflict this read cannot see): nobody can be told apart, all run alone.
        if (stale.length === 0) return [...accepted.map((a) => a.member), ...leftOut];
        leftOut.push(...stale.map((a) => a.member));
        accepted = accepted.filter((a) => !stale.includes(a));
      }
    }
    for (const { member } of accepted) if (member.outcome !== undefined) settle(member, member.outcome);
    return leftOut;
  }

  /** Runs every body on the shared read rounds; returns the members whose writes can commit together. */
  private async runBodies(members: Member[]): Promise<{ accepted: Accepted[]; leftOut: Member[] }> {
    const reads = new ReadRounds(this.db, members.length, this.options.readRoundMs, this.stats);
    const views = members.map(() => new OptimisticTransaction(reads.readerFor(), this.db.batch()));
    await Promise.all(
      members.map(async (member, i) => {
        try {
          member.outcome = { ok: true, value: await member.body(views[i]) };
        } catch (error) {
          member.outcome = { ok: false, error };
        } finally {
          reads.memberDone();
        }
      }),
    );
    if (reads.failure !== null) throw reads.failure.error;

    const read = new Set<string>();
    const written = new Set<string>();
    const accepted: Accepted[] = [];
    const leftOut: Member[] = [];
    let writes = 0;
    for (const [i, member] of members.entries()) {
      const view = views[i];
      if (member.outcome?.ok !== true) {
        // Two versions of one document seen while reading: a race this member lost, it runs again alone.
        if (member.outcome !== undefined && member.outcome.error instanceof ReadConflict) leftOut.push(member);
        continue;
      }
      const overlaps = [...view.writePaths].some((path) => read.has(path) || written.has(path)) || [...view.readPaths].some((path) => written.has(path));
      if (overlaps || writes + view.writeCount > MAX_WRITES) {
        if (overlaps) this.stats.overlaps++;
        leftOut.push(member);
        continue;
      }
      writes += view.writeCount;
      view.readPaths.forEach((path) => read.add(path));
      view.writePaths.forEach((path) => written.add(path));
      accepted.push({ member, view });
    }
    return { accepted, leftOut };
  }

  private async commit(accepted: readonly Accepted[]): Promise<void> {
    const batch = this.db.batch();
    let writes = 0;
    for (const { view } of accepted) {
      view.applyTo(batch);
      writes += view.writeCount;
    }
    if (writes > 0) await batch.commit();
  }

  /** The members some guard of which no longer holds (one lock-free read of all guards). */
  private async staleMembers(accepted: readonly Accepted[]): Promise<Accepted[]> {
    const guards = new Map<Accepted, Guard[]>(accepted.map((a) => [a, a.view.guards()]));
    const created = new Map<Accepted, DocumentReference[]>(accepted.map((a) => [a, a.view.createdRefs()]));
    const refs = new Map<string, DocumentReference>();
    for (const a of accepted) {
      for (const g of guards.get(a) ?? []) refs.set(g.ref.path, g.ref);
      for (const ref of created.get(a) ?? []) refs.set(ref.path, ref);
    }
    const snapshots = refs.size === 0 ? [] : await this.db.getAll(...refs.values());
    const now = new Map(snapshots.map((s) => [s.ref.path, s.updateTime ?? null]));
    return accepted.filter(
      (a) =>
        (guards.get(a) ?? []).some((g) => !sameVersion(g.updateTime, now.get(g.ref.path) ?? null)) ||
        (created.get(a) ?? []).some((ref) => (now.get(ref.path) ?? null) !== null),
    );
  }

  private async alone(member: Member): Promise<void> {
    try {
      settle(member, { ok: true, value: await this.runAlone(member.body) });
    } catch (error) {
      settle(member, { ok: false, error });
    }
  }

  private fail(members: number, error: unknown): void {
    this.stats.failedGroups++;
    const { code, message } = typeof error === "object" && error !== null ? (error as { code?: unknown; message?: unknown }) : { code: null, message: null };
    try {
      this.options.onGroupFailure?.({
        members,
        code: typeof code === "string" || typeof code === "number" ? code : null,
        message: typeof message === "string" ? message : String(error),
      });
    } catch (logError) {
      // A failing logger must not stop the members from running alone; stderr still gets both.
      console.error("group commit: could not report a failed shared commit", logError, error);
    }
  }
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Member {
  body: TransactionBody<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  /** What its body did in the shared attempt; delivered only once that attempt committed. */
  outcome?: Outcome;
}

interface Accepted {
  member: Member;
  view: OptimisticTransaction;
}

function settle(member: Member, outcome: Outcome): void {
  if (outcome.ok) member.resolve(outcome.value);
  else member.reject(outcome.error);
}

interface PendingRead {
  reader: object;
  refs: DocumentReference[];
  resolve: (snapshots: DocumentSnapshot[]) => void;
  reject: (error: unknown) => void;
}

/**
 * Gathers the members' document reads into rounds: a round goes out as one lock-free `getAll` when
 * every member still running is waiting on Firestore (a round or a query), or after `readRoundMs`, so a
 * member busy elsewhere delays the others only that long.
 */
class ReadRounds {
  failure: { error: unknown } | null = null;
  private pending: PendingRead[] = [];
  /** Members waiting on Firestore → how many reads each is waiting on. */
  private readonly blocked = new Map<object, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Firestore,
    private live: number,
    private readonly roundMs: number,
    private readonly stats: { rounds: number; timedRounds: number },
  ) {}

  /** One member's reader. */
  readerFor(): Reader {
    const member = {};
    return {
      getAll: (refs) => this.read(member, refs),
      query: (query) => this.query(member, query),
    };
  }

  memberDone(): void {
    this.live--;
    this.maybeFlush();
  }

  private read(member: object, refs: DocumentReference[]): Promise<DocumentSnapshot[]> {
    if (this.failure !== null) return Promise.reject(this.failure.error);
    return new Promise((resolve, reject) => {
      this.pending.push({ reader: member, refs, resolve, reject });
      this.block(member);
      this.maybeFlush();
    });
  }

  /** A query cannot join a round: it goes out on its own, and its member counts as waiting meanwhile. */
  private async query<A, D extends DocumentData>(member: object, query: Query<A, D>): Promise<QuerySnapshot<A, D>> {
    if (this.failure !== null) throw this.failure.error;
    this.block(member);
    this.maybeFlush();
    try {
      return await query.get();
    } catch (error) {
      this.failure ??= { error };
      throw error;
    } finally {
      this.unblock(member);
    }
  }

  private block(member: object): void {
    this.blocked.set(member, (this.blocked.get(member) ?? 0) + 1);
  }

  private unblock(member: object): void {
    const left = (this.blocked.get(member) ?? 1) - 1;
    if (left > 0) this.blocked.set(member, left);
    else this.blocked.delete(member);
  }

  private maybeFlush(): void {
    if (this.pending.length === 0) return;
    if (this.blocked.size >= this.live) this.flush();
    else
      this.timer ??= setTimeout(() => {
        this.stats.timedRounds++;
        this.flush();
      }, this.roundMs);
  }

  private flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const round = this.pending;
    this.pending = [];
    if (round.length === 0) return;
    this.stats.rounds++;
    // Through a promise: should getAll throw synchronously, the round's members get the error instead of waiting forever.
    Promise.resolve(round.flatMap((r) => r.refs)).then((refs) => this.db.getAll(...refs)).then(
      (snapshots) => {
        // Unblock all first: the members resume after this loop, and their next reads gather again.
        for (const r of round) this.unblock(r.reader);
        let at = 0;
        for (const r of round) {
          r.resolve(snapshots.slice(at, at + r.refs.length));
          at += r.refs.length;
        }
      },
      (error: unknown) => {
        this.failure ??= { error };
        for (const r of round) {
          this.unblock(r.reader);
          r.reject(error);
        }
      },
    );
  }
}

export type { OptimisticStats };
