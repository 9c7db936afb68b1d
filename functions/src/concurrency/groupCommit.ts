import { DocumentReference, type DocumentData, type DocumentSnapshot, type Firestore, type Query, type QuerySnapshot, type Transaction, type UpdateData, type WithFieldValue, type WriteBatch } from "firebase-admin/firestore";

/**
 * The part of a Firestore `Transaction` that the webhook and reservation transactions use. A real
 * `Transaction` is one; so is a member of a group commit (below).
 */
export interface TransactionLike {
  get<A, D extends DocumentData>(query: Query<A, D>): Promise<QuerySnapshot<A, D>>;
  get<A, D extends DocumentData>(ref: DocumentReference<A, D>): Promise<DocumentSnapshot<A, D>>;
  getAll<A, D extends DocumentData>(...refs: Array<DocumentReference<A, D>>): Promise<Array<DocumentSnapshot<A, D>>>;
  create<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: WithFieldValue<A>): unknown;
  set<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: WithFieldValue<A>): unknown;
  update<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: UpdateData<D>): unknown;
}

export type TransactionBody<T> = (tx: TransactionLike) => Promise<T>;

/** Why a shared transaction failed (its members then ran alone): for the instance's log. */
export interface GroupFailure {
  members: number;
  code: string | number | null;
  message: string;
}

export interface GroupCommitOptions {
  /** Most transactions one commit carries (a commit holds at most 500 writes; ours write about 6 each). */
  maxMembers: number;
  /** Shared transactions running at once; further arrivals gather into the next group meanwhile. */
  maxInFlight: number;
  /** A round of reads goes out after this long even if a member is still busy elsewhere. */
  readRoundMs: number;
  onGroupFailure?: (failure: GroupFailure) => void;
}

export const DEFAULT_GROUP_COMMIT: GroupCommitOptions = { maxMembers: 24, maxInFlight: 2, readRoundMs: 25 };

/** Writes one commit may carry, with room under Firestore's 500 (a transform can count as one more). */
const MAX_WRITES = 400;

/**
 * Group commit: the transactions that the concurrent requests of one instance start together run as
 * ONE Firestore transaction. Each member still reads what it reads and decides alone, but the reads of
 * a round go out as one `getAll` and the writes in one commit, so a burst of N webhook deliveries costs
 * a few round trips instead of 3N. Round trips are what bound throughput when Firestore and the function
 * share a few CPUs (gRPC, the runtime's per-request bookkeeping, the server's transaction handling),
 * not documents.
 *
 * A member's outcome is one it could have had alone:
 * - its writes commit together or not at all, and its reads come from the shared, locked snapshot;
 * - a member that throws writes nothing (it gets its error once the group has finished, so the keys it
 *   holds outlive the Firestore locks its reads took);
 * - members whose documents overlap never commit together: a member that writes a document an earlier
 *   accepted member read or wrote, or reads one it wrote, is left out and runs again alone after the
 *   commit (the instance's local keys make this rare; this check makes it safe without them);
 * - when the shared transaction fails for any reason (contention with another instance, a `create`
 *   that finds its document, an unavailable server), every member runs again alone, with Firestore's
 *   usual retries, exactly as if it had never been grouped.
 * A query's result is checked document by document; a query that found nothing is not, so a body must
 * not write on the strength of an absence (ours only defer).
 */
export class GroupCommit {
  private readonly waiting: Member[][] = [];
  private inFlight = 0;
  /**
   * Counters for tests and diagnostics: shared transactions (`groups`, of `members` members,
   * `failedGroups` of them failed), members left out of a commit for overlapping (`overlaps`),
   * transactions run `alone` (a lone arrival, or a member left out), read `rounds`.
   */
  readonly stats = { groups: 0, members: 0, failedGroups: 0, overlaps: 0, alone: 0, rounds: 0, timedRounds: 0 };

  constructor(
    private readonly db: Firestore,
    private readonly options: GroupCommitOptions = DEFAULT_GROUP_COMMIT,
  ) {}

  /** Runs `body` as (part of) a transaction; resolves with its result once its writes are committed. */
  run<T>(body: TransactionBody<T>): Promise<T> {
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
    let leftOut: Member[];
    try {
      leftOut = await this.db.runTransaction((tx) => this.attempt(tx, members), { maxAttempts: 1 });
    } catch (error) {
      this.stats.failedGroups++;
      this.report(members.length, error);
      return members;
    }
    for (const member of members) {
      if (!leftOut.includes(member) && member.outcome !== undefined) settle(member, member.outcome);
    }
    return leftOut;
  }

  /** The body of the shared transaction. Returns the members whose writes were left out of it. */
  private async attempt(tx: Transaction, members: Member[]): Promise<Member[]> {
    const reads = new ReadRounds(tx, members.length, this.options.readRoundMs, this.stats);
    const views = members.map(() => new MemberTransaction(reads, this.db.batch()));
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
    const leftOut: Member[] = [];
    let writes = 0;
    for (const [i, member] of members.entries()) {
      const view = views[i];
      if (member.outcome?.ok !== true) continue;
      const overlaps = [...view.writePaths].some((path) => read.has(path) || written.has(path)) || [...view.readPaths].some((path) => written.has(path));
      if (overlaps || writes + view.writeCount > MAX_WRITES) {
        if (overlaps) this.stats.overlaps++;
        leftOut.push(member);
        continue;
      }
      writes += view.writeCount;
      view.readPaths.forEach((path) => read.add(path));
      view.writePaths.forEach((path) => written.add(path));
      view.applyTo(tx);
    }
    return leftOut;
  }

  private async alone(member: Member): Promise<void> {
    this.stats.alone++;
    try {
      settle(member, { ok: true, value: await this.db.runTransaction((tx) => member.body(tx)) });
    } catch (error) {
      settle(member, { ok: false, error });
    }
  }

  private report(members: number, error: unknown): void {
    const { code, message } = typeof error === "object" && error !== null ? (error as { code?: unknown; message?: unknown }) : { code: null, message: null };
    try {
      this.options.onGroupFailure?.({
        members,
        code: typeof code === "string" || typeof code === "number" ? code : null,
        message: typeof message === "string" ? message : String(error),
      });
    } catch (logError) {
      // A failing logger must not stop the members from running alone; stderr still gets both.
      console.error("group commit: could not report a failed shared transaction", logError, error);
    }
  }
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Member {
  body: TransactionBody<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  /** What its body did in the latest shared attempt; delivered only if that attempt committed. */
  outcome?: Outcome;
}

function settle(member: Member, outcome: Outcome): void {
  if (outcome.ok) member.resolve(outcome.value);
  else member.reject(outcome.error);
}

interface PendingRead {
  member: MemberTransaction;
  refs: DocumentReference[];
  resolve: (snapshots: DocumentSnapshot[]) => void;
  reject: (error: unknown) => void;
}

/**
 * Gathers the members' document reads into rounds: a round goes out as one `getAll` when every member
 * still running is waiting on Firestore (a round or a query), or after `readRoundMs`, so a member busy
 * elsewhere (a lock-free read, say) delays the others only that long.
 */
class ReadRounds {
  failure: { error: unknown } | null = null;
  private pending: PendingRead[] = [];
  /** Members waiting on Firestore → how many reads each is waiting on. */
  private readonly blocked = new Map<MemberTransaction, number>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly tx: Transaction,
    private live: number,
    private readonly roundMs: number,
    private readonly stats: { rounds: number; timedRounds: number },
  ) {}

  read(member: MemberTransaction, refs: DocumentReference[]): Promise<DocumentSnapshot[]> {
    if (this.failure !== null) return Promise.reject(this.failure.error);
    return new Promise((resolve, reject) => {
      this.pending.push({ member, refs, resolve, reject });
      this.block(member);
      this.maybeFlush();
    });
  }

  /** A query cannot join a round: it goes out on its own, and its member counts as waiting meanwhile. */
  async query<A, D extends DocumentData>(member: MemberTransaction, query: Query<A, D>): Promise<QuerySnapshot<A, D>> {
    if (this.failure !== null) throw this.failure.error;
    this.block(member);
    this.maybeFlush();
    try {
      return await this.tx.get(query);
    } catch (error) {
      this.failure ??= { error };
      throw error;
    } finally {
      this.unblock(member);
    }
  }

  memberDone(): void {
    this.live--;
    this.maybeFlush();
  }

  private block(member: MemberTransaction): void {
    this.blocked.set(member, (this.blocked.get(member) ?? 0) + 1);
  }

  private unblock(member: MemberTransaction): void {
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
    Promise.resolve(round.flatMap((r) => r.refs)).then((refs) => this.tx.getAll(...refs)).then(
      (snapshots) => {
        // Unblock all first: the members resume after this loop, and their next reads gather again.
        for (const r of round) this.unblock(r.member);
        let at = 0;
        for (const r of round) {
          r.resolve(snapshots.slice(at, at + r.refs.length));
          at += r.refs.length;
        }
      },
      (error: unknown) => {
        this.failure ??= { error };
        for (const r of round) {
          this.unblock(r.member);
          r.reject(error);
        }
      },
    );
  }
}

/**
 * One member's view of the shared transaction: reads go to the rounds, writes wait for the commit, and
 * the paths of both are kept to tell overlapping members apart.
 */
class MemberTransaction implements TransactionLike {
  readonly readPaths = new Set<string>();
  readonly writePaths = new Set<string>();
  private readonly writes: Array<(tx: Transaction) => void> = [];

  /**
   * `check` is never committed: each write is also made on it at once, so a write Firestore would refuse
   * (an undefined field, a bad path) throws inside this member's body, as it would alone, and fails this
   * member only instead of the shared commit.
   */
  constructor(
    private readonly reads: ReadRounds,
    private readonly check: WriteBatch,
  ) {}

  get writeCount(): number {
    return this.writes.length;
  }

  get<A, D extends DocumentData>(query: Query<A, D>): Promise<QuerySnapshot<A, D>>;
  get<A, D extends DocumentData>(ref: DocumentReference<A, D>): Promise<DocumentSnapshot<A, D>>;
  async get<A, D extends DocumentData>(target: Query<A, D> | DocumentReference<A, D>): Promise<QuerySnapshot<A, D> | DocumentSnapshot<A, D>> {
    if (target instanceof DocumentReference) return (await this.getAll(target))[0];
    this.assertNoWrites();
    const snapshot = await this.reads.query(this, target);
    for (const doc of snapshot.docs) this.readPaths.add(doc.ref.path);
    return snapshot;
  }

  async getAll<A, D extends DocumentData>(...refs: Array<DocumentReference<A, D>>): Promise<Array<DocumentSnapshot<A, D>>> {
    this.assertNoWrites();
    if (refs.length === 0) return [];
    for (const ref of refs) this.readPaths.add(ref.path);
    // Each snapshot comes back built with the converter of the reference it answers (the SDK's
    // DocumentReader rebuilds it per requested reference), so the cast only restores the static type.
    return (await this.reads.read(this, refs as DocumentReference[])) as Array<DocumentSnapshot<A, D>>;
  }

  create<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: WithFieldValue<A>): this {
    this.check.create(ref, data);
    return this.write(ref.path, (tx) => tx.create(ref, data));
  }

  set<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: WithFieldValue<A>): this {
    this.check.set(ref, data);
    return this.write(ref.path, (tx) => tx.set(ref, data));
  }

  update<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: UpdateData<D>): this {
    this.check.update(ref, data);
    return this.write(ref.path, (tx) => tx.update(ref, data));
  }

  /** Adds this member's writes to the shared transaction, in the order it made them. */
  applyTo(tx: Transaction): void {
    for (const write of this.writes) write(tx);
  }

  private write(path: string, write: (tx: Transaction) => void): this {
    this.writePaths.add(path);
    this.writes.push(write);
    return this;
  }

  /** As a real transaction does: a body that reads after writing would fail when it runs alone. */
  private assertNoWrites(): void {
    if (this.writes.length > 0) throw new Error("Firestore transactions require all reads to be executed before all writes.");
  }
}
