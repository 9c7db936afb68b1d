import type { DocumentData, DocumentReference, DocumentSnapshot, Firestore, Query, QuerySnapshot } from "firebase-admin/firestore";
import {
  DEFAULT_OPTIMISTIC,
  isConflict,
  OptimisticTransaction,
  ReadConflict,
  runOptimistic,
  sameVersion,
  servedFirst,
  type OptimisticOptions,
  type OptimisticStats,
  type Reader,
  type TransactionBody,
} from "./optimistic";
import type { StartCall } from "./requestDomain";

export type { TransactionBody, TransactionLike } from "./optimistic";

/** Why a shared commit failed (its members then ran again): for the instance's log. */
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
  /**
   * Shared commits running at once; further arrivals gather into the next group meanwhile. One: a
   * second slot let thin streams (an instance's third of the traffic at K = 3) run mostly alone, and
   * measured no better at K = 1 (docs/performance.md).
   */
  maxInFlight: number;
  /** A round of reads goes out after this long even if a member is still busy elsewhere. */
  readRoundMs: number;
  optimistic: OptimisticOptions;
  onGroupFailure?: (failure: GroupFailure) => void;
}

export const DEFAULT_GROUP_COMMIT: GroupCommitOptions = { enabled: true, maxMembers: 24, maxInFlight: 1, readRoundMs: 25, optimistic: DEFAULT_OPTIMISTIC };

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
 * - its writes commit together or not at all, each guarded as it would be alone (the version of what it
 *   read, or the `{ exists: true }` its body passed);
 * - a member that throws writes nothing, and a write Firestore would refuse throws in its own body;
 * - members whose documents overlap never commit together: a member that writes a document an earlier
 *   accepted member read or creates, or reads or creates one it wrote, is left out and runs again after
 *   the commit (two updates of a document neither read, like two held reservations' increments, commute
 *   and go in together);
 * - when the shared commit loses a race with another instance (a guard no longer holds), one lock-free
 *   read of what the members read finds the members it was about: they decide again at once on that
 *   read, and all commit together once more. Any other failure, or a second conflict, runs every member
 *   again.
 * A member that runs again joins the next group, with fresh reads; one that misses that group too runs
 * alone (`runOptimistic`, with its own retries).
 */
export class GroupCommit {
  private readonly waiting: Member[][] = [];
  private inFlight = 0;
  /**
   * Counters for tests and diagnostics: shared commits (`groups`, of `members` members, `failedGroups` of
   * them failed), members left out of a commit for overlapping (`overlaps`), members run `alone`:
   * `loneArrivals` (groups of one, fresh or requeued) and `missedTwice` (members whose second attempt,
   * shared or alone, did not commit),
   * members `requeued` into the next group after missing one, read `rounds`, conflicts and what they
   * cost: `pruned` members that decided again after a conflict, `lostAgain` commits that lost a second
   * race after that (every member then runs again); and the optimistic runs of members alone (`commits`,
   * `conflicts`).
   */
  readonly stats = {
    groups: 0,
    members: 0,
    failedGroups: 0,
    overlaps: 0,
    alone: 0,
    loneArrivals: 0,
    missedTwice: 0,
    requeued: 0,
    rounds: 0,
    timedRounds: 0,
    pruned: 0,
    retriedGroups: 0,
    lostAgain: 0,
    commits: 0,
    conflicts: 0,
  };

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

  private runAlone<T>(body: TransactionBody<T>, optimistic: OptimisticOptions = this.options.optimistic): Promise<T> {
    this.stats.alone++;
    return runOptimistic(this.db, body, optimistic, this.stats);
  }

  private startNext(): void {
    if (this.inFlight >= this.options.maxInFlight) return;
    const members = this.waiting.shift();
    if (members === undefined) return;
    this.inFlight++;
    void this.drive(members);
  }

  private async drive(members: Member[]): Promise<void> {
    // Should execute() ever fail unexpectedly, nothing was delivered yet: every member runs again.
    let again = members;
    try {
      if (members.length === 1) {
        // A lone arrival keeps its slot for one attempt, so the arrivals behind it gather into one group.
        // Freeing the slot at once let every arrival of a thin stream run alone, which is what a third
        // of the traffic per instance (K = 3) looked like: twice the round trips per payment. If that
        // attempt loses a race, it runs again like a member whose group could not commit it.
        this.stats.loneArrivals++;
        again = (await this.alone(members[0], { oneAttempt: true })) ? [] : members;
      } else {
        again = await this.execute(members);
      }
    } finally {
      this.inFlight--;
      // A member the shared attempt could not commit (it lost a race, overlapped, or its group failed)
      // joins the next group once; if that one cannot commit it either, it runs alone, outside any slot,
      // so a member that keeps losing holds up no group.
      const requeued = again.filter((m) => !m.requeued);
      for (const member of requeued) member.requeued = true;
      this.requeue(requeued);
      this.startNext();
      for (const member of again.filter((m) => !requeued.includes(m))) {
        this.stats.missedTwice++;
        void this.alone(member);
      }
    }
  }

  /** Puts members at the head of the queue, merged into the next group when it has room. */
  private requeue(members: Member[]): void {
    if (members.length === 0) return;
    this.stats.requeued += members.length;
    const next = this.waiting[0];
    if (next !== undefined && next.length + members.length <= this.options.maxMembers) next.unshift(...members);
    else this.waiting.unshift(members);
  }

  /** Runs one group; never rejects. Returns the members that must run again. */
  private async execute(members: Member[]): Promise<Member[]> {
    this.stats.groups++;
    this.stats.members += members.length;
    let attempt: Selection;
    try {
      attempt = this.select(members, await this.runBodies(members));
    } catch (error) {
      this.fail(members.length, error);
      return members;
    }
    const again = await this.commitAccepted(members.length, attempt);
    // Members whose body threw wrote nothing: they get their error once the group is done, as alone.
    for (const member of attempt.threw) if (member.outcome !== undefined) settle(member, member.outcome);
    return again;
  }

  /**
   * Commits the accepted members' writes in one batch. On a conflict with another instance, one
   * lock-free read of everything the members read finds whose decision went stale; those decide again at
   * once on that read, and everyone commits together once more. Returns the members that must run again.
   */
  private async commitAccepted(size: number, attempt: Selection): Promise<Member[]> {
    let accepted = attempt.accepted;
    const leftOut = attempt.leftOut;
    for (let commit = 1; accepted.length > 0; commit++) {
      try {
        await this.commit(accepted);
        break;
      } catch (error) {
        if (!isConflict(error) || commit > 1) {
          if (isConflict(error)) this.stats.lostAgain++;
          this.fail(size, error);
          return [...accepted.map((a) => a.member), ...leftOut];
        }
        let redecided: (Selection & { stale: number }) | null;
        try {
          redecided = await this.decideStaleAgain(accepted);
        } catch (readError) {
          this.fail(size, readError);
          return [...accepted.map((a) => a.member), ...leftOut];
        }
        this.stats.retriedGroups++;
        // No guard moved (a conflict this read cannot see): nobody can be told apart, all run again.
        if (redecided === null) {
          this.fail(size, error);
          return [...accepted.map((a) => a.member), ...leftOut];
        }
        this.stats.pruned += redecided.stale;
        leftOut.push(...redecided.leftOut);
        attempt.threw.push(...redecided.threw);
        accepted = redecided.accepted;
      }
    }
    for (const { member } of accepted) if (member.outcome !== undefined) settle(member, member.outcome);
    return leftOut;
  }

  /**
   * After a lost race: one lock-free read of every document the members read, create or update with
   * `{ exists: true }` says whose decision went stale (a guard moved, a created document appeared, an
   * updated one is gone). Those members' bodies run again at
   * once, served that read, so they pay no further round trip unless they now read something else; the
   * others' decisions stand. Null when no guard moved.
   */
  private async decideStaleAgain(accepted: readonly Accepted[]): Promise<(Selection & { stale: number }) | null> {
    const refs = new Map<string, DocumentReference>();
    for (const { view } of accepted) for (const ref of [...view.readRefs(), ...view.createdRefs(), ...view.existenceGuards()]) if (!refs.has(ref.path)) refs.set(ref.path, ref);
    const snapshots = refs.size === 0 ? [] : await this.options.optimistic.startCall(() => this.db.getAll(...refs.values()));
    const now = new Map(snapshots.map((snapshot) => [snapshot.ref.path, snapshot]));
    const version = (path: string) => now.get(path)?.updateTime ?? null;
    // A document it creates exists now, or one it updates with `{ exists: true }` is gone (as far as this read saw).
    const collides = (view: OptimisticTransaction) =>
      view.createdRefs().some((ref) => version(ref.path) !== null) || view.existenceGuards().some((ref) => now.has(ref.path) && version(ref.path) === null);
    const stale = accepted.filter(({ view }) => view.guards().some((g) => !sameVersion(g.updateTime, version(g.ref.path))) || collides(view));
    if (stale.length === 0) return null;
    const kept = accepted.filter((a) => !stale.includes(a));
    const members = stale.map((a) => a.member);
    const views = await this.runBodies(members, now);
    // A rerun that still collides with this read would fail the commit again: it runs again later, and
    // is not weighed against the others below.
    const doomed = members.filter((m, i) => m.outcome?.ok === true && collides(views[i]));
    const live = members.map((m, i) => ({ m, view: views[i] })).filter(({ m }) => !doomed.includes(m));
    const again = this.select(live.map(({ m }) => m), live.map(({ view }) => view), kept);
    return { ...again, leftOut: [...again.leftOut, ...doomed], stale: stale.length };
  }

  /** Runs every body on shared read rounds (a read `served` already answers costs none); records each outcome. */
  private async runBodies(members: Member[], served?: ReadonlyMap<string, DocumentSnapshot>): Promise<OptimisticTransaction[]> {
    const reads = new ReadRounds(this.db, members.length, this.options.readRoundMs, this.options.optimistic.startCall, this.stats);
    const views = members.map(() => new OptimisticTransaction(servedFirst(served, reads.readerFor()), this.db.batch()));
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
    return views;
  }

  /** Which members' writes can commit together, after those of `kept` (already accepted). */
  private select(members: Member[], views: OptimisticTransaction[], kept: readonly Accepted[] = []): Selection {
    const dependedOn = new Set<string>();
    const written = new Set<string>();
    const accepted: Accepted[] = [];
    const leftOut: Member[] = [];
    const threw: Member[] = [];
    let writes = 0;
    const accept = (entry: Accepted) => {
      writes += entry.view.writeCount;
      entry.view.dependsOnPaths.forEach((path) => dependedOn.add(path));
      entry.view.writePaths.forEach((path) => written.add(path));
      accepted.push(entry);
    };
    kept.forEach(accept);
    for (const [i, member] of members.entries()) {
      const view = views[i];
      if (member.outcome?.ok !== true) {
        // Two versions of one document seen while reading: a race this member lost, it runs again.
        if (member.outcome !== undefined && member.outcome.error instanceof ReadConflict) leftOut.push(member);
        else threw.push(member);
        continue;
      }
      // As if run one after another: nobody writes what another depends on (read with a version guard,
      // or creates). Writes to a document neither depends on are applied in member order, which is the
      // order a serial run would have made them in (two held reservations' increments of one product).
      const overlaps = [...view.writePaths].some((path) => dependedOn.has(path)) || [...view.dependsOnPaths].some((path) => written.has(path));
      if (overlaps || writes + view.writeCount > MAX_WRITES) {
        if (overlaps) this.stats.overlaps++;
        leftOut.push(member);
        continue;
      }
      accept({ member, view });
    }
    return { accepted, leftOut, threw };
  }

  private async commit(accepted: readonly Accepted[]): Promise<void> {
    const batch = this.db.batch();
    let writes = 0;
    for (const { view } of accepted) {
      view.applyTo(batch);
      writes += view.writeCount;
    }
    if (writes > 0) await this.options.optimistic.startCall(() => batch.commit());
  }

  /** Runs the member alone and settles it; with `oneAttempt`, a lost race leaves it unsettled (false: it runs again). */
  private async alone(member: Member, { oneAttempt = false } = {}): Promise<boolean> {
    try {
      const optimistic = oneAttempt ? { ...this.options.optimistic, maxAttempts: 1 } : this.options.optimistic;
      settle(member, { ok: true, value: await this.runAlone(member.body, optimistic) });
    } catch (error) {
      if (oneAttempt && (isConflict(error) || error instanceof ReadConflict)) return false;
      settle(member, { ok: false, error });
    }
    return true;
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
  /** It already missed one shared attempt. */
  requeued?: boolean;
}

interface Accepted {
  member: Member;
  view: OptimisticTransaction;
}

interface Selection {
  accepted: Accepted[];
  /** Members that must run again (a read race, an overlap, the commit's write limit). */
  leftOut: Member[];
  /** Members whose body threw: they wrote nothing and get their error once the group is done. */
  threw: Member[];
}

/** A reader that answers from `served` when it holds every document asked for, as asked for (same converter). */
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
    private readonly startCall: StartCall,
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

  /**
   * A query cannot join a round: it goes out on its own, and its member counts as waiting meanwhile. It
   * is that member's alone: when it fails (a missing index, say), the member's body gets the error and
   * its neighbours go on, as they would have without it.
   */
  private async query<A, D extends DocumentData>(member: object, query: Query<A, D>): Promise<QuerySnapshot<A, D>> {
    if (this.failure !== null) throw this.failure.error;
    this.block(member);
    this.maybeFlush();
    try {
      return await this.startCall(() => query.get());
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
    Promise.resolve(round.flatMap((r) => r.refs)).then((refs) => this.startCall(() => this.db.getAll(...refs))).then(
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
