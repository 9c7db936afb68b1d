import { DocumentReference, type DocumentData, type DocumentSnapshot, type Firestore, type Precondition, type Query, type QuerySnapshot, type Timestamp, type UpdateData, type WithFieldValue, type WriteBatch } from "firebase-admin/firestore";
import { GRPC_ALREADY_EXISTS, GRPC_FAILED_PRECONDITION, grpcCodeOf } from "../errors";
import { outsideRequestDomain, type StartCall } from "./requestDomain";

/**
 * The part of a Firestore `Transaction` that the webhook and reservation transactions use. A real
 * `Transaction` is one; so is an `OptimisticTransaction` (below).
 */
export interface TransactionLike {
  get<A, D extends DocumentData>(query: Query<A, D>): Promise<QuerySnapshot<A, D>>;
  get<A, D extends DocumentData>(ref: DocumentReference<A, D>): Promise<DocumentSnapshot<A, D>>;
  getAll<A, D extends DocumentData>(...refs: Array<DocumentReference<A, D>>): Promise<Array<DocumentSnapshot<A, D>>>;
  create<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: WithFieldValue<A>): unknown;
  set<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: WithFieldValue<A>): unknown;
  /** With `precondition`, the write depends on that and not on the version read (see OptimisticTransaction.update). */
  update<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: UpdateData<D>, precondition?: Precondition): unknown;
}

export type TransactionBody<T> = (tx: TransactionLike) => Promise<T>;

/** Where an optimistic transaction's reads go: straight to Firestore, or into a group's shared rounds. */
export interface Reader {
  getAll(refs: DocumentReference[]): Promise<DocumentSnapshot[]>;
  query<A, D extends DocumentData>(query: Query<A, D>): Promise<QuerySnapshot<A, D>>;
}

export function directReader(db: Firestore, startCall: StartCall = outsideRequestDomain): Reader {
  return {
    getAll: (refs) => startCall(() => db.getAll(...refs)),
    query: (query) => startCall(() => query.get()),
  };
}

/** `reader`, except that a read whose every document `served` holds is answered from it (no round trip). */
export function servedFirst(served: ReadonlyMap<string, DocumentSnapshot> | undefined, reader: Reader): Reader {
  if (served === undefined) return reader;
  return {
    getAll: (refs) => {
      const hits = refs.map((ref) => served.get(ref.path));
      if (hits.every((hit, i): hit is DocumentSnapshot => hit !== undefined && hit.ref.isEqual(refs[i]))) return Promise.resolve(hits as DocumentSnapshot[]);
      return reader.getAll(refs);
    },
    query: (query) => reader.query(query),
  };
}

/** A document a commit depends on: unchanged since it was read (`updateTime`), or still absent (null). */
export interface Guard {
  ref: DocumentReference;
  updateTime: Timestamp | null;
}

/** Thrown inside a body that read one document twice and saw it change between the reads: run again. */
export class ReadConflict extends Error {}

/**
 * A transaction without locks: reads are plain (lock-free) reads that remember the version they saw, and
 * the writes go out in ONE atomic batch in which every write to a document that was read carries that
 * version as its precondition (`lastUpdateTime`) unless the body passes `{ exists: true }` (see update),
 * and every `create` the precondition that the document does not exist. The commit succeeds only if
 * nothing it was decided on has changed since, which is what a serializable transaction guarantees for
 * the documents it writes; a conflict fails the commit at once (FAILED_PRECONDITION / ALREADY_EXISTS /
 * NOT_FOUND) and the body runs again on fresh reads.
 *
 * Why not Firestore's own transactions: they lock what they read until commit. Two of them that read and
 * then write one document (two instances paying one product, two copies of one event) wait for each
 * other until one is aborted: seconds in production, a ~20 s lock timeout in the emulator. Here nobody
 * waits on anybody; the loser of a race pays one more round of reads.
 *
 * What it does not guarantee: a document that is read but not written, or written with `{ exists: true }`,
 * is not re-checked at commit (beyond existing). Our bodies decide only refusals and no-ops on the
 * first kind (a refusal on shards read but not written, `already_finalized`), whose outcome is at worst as of a few
 * milliseconds earlier; the second kind is a held reservation's own units (inventory/stock.ts,
 * heldVersionFree), right whatever the backend's other movements commit meanwhile.
 */
export class OptimisticTransaction implements TransactionLike {
  /** First version seen of every document read, by path, with the reference as the body asked for it. */
  private readonly seen = new Map<string, Guard>();
  readonly writePaths = new Set<string>();
  private readonly writes: Array<(batch: WriteBatch) => void> = [];
  private readonly created: DocumentReference[] = [];
  /** Documents updated with `{ exists: true }`, by path: the version read does not guard them. */
  private readonly unversioned = new Map<string, DocumentReference>();

  /**
   * `check` is never committed: each write is also made on it at once, so a write Firestore would refuse
   * (an undefined field, a bad path) throws inside the body, where the body's caller sees it, instead of
   * failing a commit it shares with others.
   */
  constructor(
    private readonly reader: Reader,
    private readonly check: WriteBatch,
  ) {}

  get writeCount(): number {
    return this.writes.length;
  }

  /**
   * Documents whose state this transaction's commit depends on: those it read and those it creates.
   * Another writer of one of them, in the same commit or before it, changes what the body decided on.
   * A document it only updates or sets without reading, or updates with its own precondition, is not
   * among them: such writes (the increments that consume a held reservation) give the same result in any
   * order, so two members may both make one.
   */
  get dependsOnPaths(): Set<string> {
    return new Set([...[...this.seen.keys()].filter((path) => !this.unversioned.has(path)), ...this.created.map((ref) => ref.path)]);
  }

  /** Every document read, as the body asked for it: a rerun can be served the same references. */
  readRefs(): DocumentReference[] {
    return [...this.seen.values()].map((guard) => guard.ref);
  }

  get<A, D extends DocumentData>(query: Query<A, D>): Promise<QuerySnapshot<A, D>>;
  get<A, D extends DocumentData>(ref: DocumentReference<A, D>): Promise<DocumentSnapshot<A, D>>;
  async get<A, D extends DocumentData>(target: Query<A, D> | DocumentReference<A, D>): Promise<QuerySnapshot<A, D> | DocumentSnapshot<A, D>> {
    if (target instanceof DocumentReference) return (await this.getAll(target))[0];
    this.assertNoWrites();
    const snapshot = await this.reader.query(target);
    for (const doc of snapshot.docs) this.remember(doc);
    return snapshot;
  }

  async getAll<A, D extends DocumentData>(...refs: Array<DocumentReference<A, D>>): Promise<Array<DocumentSnapshot<A, D>>> {
    this.assertNoWrites();
    if (refs.length === 0) return [];
    // Each snapshot comes back built with the converter of the reference it answers (the SDK's
    // DocumentReader rebuilds it per requested reference), so the cast only restores the static type.
    const snapshots = (await this.reader.getAll(refs as DocumentReference[])) as Array<DocumentSnapshot<A, D>>;
    for (const snapshot of snapshots) this.remember(snapshot);
    return snapshots;
  }

  create<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: WithFieldValue<A>): this {
    this.check.create(ref, data);
    this.created.push(ref.withConverter(null));
    return this.write(ref.path, (batch) => batch.create(ref, data));
  }

  set<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: WithFieldValue<A>): this {
    // A set cannot carry a precondition: overwriting a document this body read would not be guarded.
    if (this.seen.has(ref.path)) throw new Error(`set() of ${ref.path}, which this transaction read: use update() so the write is guarded`);
    this.check.set(ref, data);
    return this.write(ref.path, (batch) => batch.set(ref, data));
  }

  /**
   * Guarded by the version read, unless the caller passes `{ exists: true }`, as Firestore's own
   * `update(ref, data, precondition)` lets it: the write then depends only on the document still
   * existing. That is for an increment that is right whatever else changed the document since the read
   * (a held reservation's own units): it commits over other writers' increments instead of losing a race
   * to each of them. A real transaction is serializable either way; here the caller answers for it.
   */
  update<A, D extends DocumentData>(ref: DocumentReference<A, D>, data: UpdateData<D>, precondition?: Precondition): this {
    const seen = this.seen.get(ref.path);
    // Firestore would refuse it at commit (NOT_FOUND), failing a batch shared with others: fail here.
    if (seen !== undefined && seen.updateTime === null) throw new Error(`update() of ${ref.path}, which this transaction read as missing`);
    // The version read is the only version guard: a caller's own version would bypass the conflict checks.
    if (precondition !== undefined && (precondition.exists !== true || precondition.lastUpdateTime !== undefined)) {
      throw new Error(`update() of ${ref.path}: only { exists: true } may replace the version read as its precondition`);
    }
    const guard: Precondition | undefined = precondition ?? (seen?.updateTime ? { lastUpdateTime: seen.updateTime } : undefined);
    if (precondition !== undefined) this.unversioned.set(ref.path, ref as DocumentReference);
    const write = (batch: WriteBatch) => (guard ? batch.update(ref, data, guard) : batch.update(ref, data));
    write(this.check);
    return this.write(ref.path, write);
  }

  /** What the commit depends on: the documents it writes that were read, at the version they were read. */
  guards(): Guard[] {
    return [...this.writePaths]
      .filter((path) => !this.unversioned.has(path))
      .map((path) => this.seen.get(path))
      .filter((g): g is Guard => g !== undefined);
  }

  /** Documents it updates with `{ exists: true }`: the commit also depends on their still existing. */
  existenceGuards(): DocumentReference[] {
    return [...this.unversioned.values()];
  }

  /** Documents it creates: the commit also depends on their not existing. */
  createdRefs(): DocumentReference[] {
    return [...this.created];
  }

  /** Adds this transaction's writes to `batch`, in the order they were made. */
  applyTo(batch: WriteBatch): void {
    for (const write of this.writes) write(batch);
  }

  private remember<A, D extends DocumentData>(snapshot: DocumentSnapshot<A, D>): void {
    const updateTime = snapshot.updateTime ?? null;
    const earlier = this.seen.get(snapshot.ref.path);
    if (earlier === undefined) {
      this.seen.set(snapshot.ref.path, { ref: snapshot.ref as DocumentReference, updateTime });
      return;
    }
    // A real transaction reads one snapshot; two different versions of one document would mix two.
    if (!sameVersion(earlier.updateTime, updateTime)) throw new ReadConflict(`${snapshot.ref.path} changed between two reads of one transaction`);
  }

  private write(path: string, write: (batch: WriteBatch) => void): this {
    this.writePaths.add(path);
    this.writes.push(write);
    return this;
  }

  /** As a real transaction does: a body that reads after writing is refused. */
  private assertNoWrites(): void {
    if (this.writes.length > 0) throw new Error("Firestore transactions require all reads to be executed before all writes.");
  }
}

export function sameVersion(a: Timestamp | null, b: Timestamp | null): boolean {
  return a === null || b === null ? a === b : a.isEqual(b);
}

const GRPC_NOT_FOUND = 5;
const GRPC_ABORTED = 10;

/**
 * What a commit fails with when it lost to another writer: a guarded document changed, a created one
 * appeared, or an updated one is gone (a product deleted since its held reservation was read).
 */
export function isConflict(error: unknown): boolean {
  const code = grpcCodeOf(error);
  return code === GRPC_FAILED_PRECONDITION || code === GRPC_ALREADY_EXISTS || code === GRPC_ABORTED || code === GRPC_NOT_FOUND;
}

export interface OptimisticOptions {
  /** Runs of the body before a conflict is given up on (and answered as transient). */
  maxAttempts: number;
  /** The wait before a run after a conflict is jittered up to this times the attempt number. */
  backoffMs: number;
  /** How the reads and commits start: outside the runtime's per-request domain (requestDomain.ts), or in place. */
  startCall: StartCall;
}

export const DEFAULT_OPTIMISTIC: OptimisticOptions = { maxAttempts: 10, backoffMs: 10, startCall: outsideRequestDomain };

/** Statistics of optimistic runs: for the bench and the tests. */
export interface OptimisticStats {
  commits: number;
  conflicts: number;
}

/** Runs `body` as an optimistic transaction on `db`, again on fresh reads after each conflict. */
export async function runOptimistic<T>(db: Firestore, body: TransactionBody<T>, options: OptimisticOptions = DEFAULT_OPTIMISTIC, stats?: OptimisticStats): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let conflict: unknown;
    try {
      const tx = new OptimisticTransaction(directReader(db, options.startCall), db.batch());
      const value = await body(tx);
      if (tx.writeCount === 0) return value;
      const batch = db.batch();
      tx.applyTo(batch);
      try {
        await options.startCall(() => batch.commit());
      } catch (error) {
        // Only the commit's FAILED_PRECONDITION / ALREADY_EXISTS / ABORTED / NOT_FOUND mean a lost race:
        // the same codes from a read (a query without its index, say) are the body's own failure.
        if (!isConflict(error)) throw error;
        conflict = error;
      }
      if (conflict === undefined) {
        if (stats) stats.commits++;
        return value;
      }
    } catch (error) {
      if (!(error instanceof ReadConflict)) throw error;
      conflict = error;
    }
    // A document this body creates already exists, or one it updates is gone: one run on fresh reads sees
    // it (a duplicate event answers `duplicate`, a deleted product sends the payment to review); a body
    // that still writes it so is wrong, and more runs would not change that.
    const code = grpcCodeOf(conflict);
    const retries = code === GRPC_ALREADY_EXISTS || code === GRPC_NOT_FOUND ? Math.min(2, options.maxAttempts) : options.maxAttempts;
    if (attempt >= retries) throw conflict;
    if (stats) stats.conflicts++;
    await new Promise((resolve) => setTimeout(resolve, Math.random() * options.backoffMs * attempt));
  }
}
