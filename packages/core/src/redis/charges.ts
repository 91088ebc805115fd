// Charges of rate limits and credits on Redis: consume batching (one script call per subject and turn), and refunds.
// One file because a key's charge with its identity's (one group on a single Redis, a reservation and
// its refund on Cluster) goes through the same batches and the same refunds: split, each would reach into the other's.
import { tillError, type TillError } from '../errors.js';
import type { ChargeOutcome, Credits, LimitState } from '../limits/rules.js';
import type { KeyRecord } from '../store/record.js';
import type { ConsumeRequest, ConsumeResult } from '../store/types.js';
import { IDENTITY_SUBJECT, identitySubject } from '../identity/record.js';
import { leastOf } from '../limits/rules.js';
import type { Commands } from './commands.js';
import type { Layout } from './layout.js';
import type { Replicas } from './replicas.js';

interface Batch {
  readonly request: ConsumeRequest;
  readonly policy: string;
  /** The identity's credit policy ('' for none). */
  readonly identityPolicy: string;
  readonly items: Array<{ request: ConsumeRequest; resolve: (result: ConsumeResult) => void; reject: (error: unknown) => void }>;
}

const shapes = new WeakMap<readonly unknown[], string>();

/** What charges of one batch must share besides their subject: each limit's bucket, name and policy. */
function shapeOf(limits: ConsumeRequest['limits']): string {
  let shape = shapes.get(limits);
  if (shape === undefined) {
    shape = limits.map((c) => `${c.bucket ?? c.name}:${c.name}:${c.limit}:${c.window}`).join('\n');
    shapes.set(limits, shape);
  }
  return shape;
}

/** A credit policy as the consume script reads it: `remaining:setAt:generation[:amount:interval]`. */
function creditPolicy(c: Credits): string {
  const head = `${c.remaining}:${c.setAt}:${c.generation}`;
  return c.refill === null ? head : `${head}:${c.refill.amount}:${c.refill.interval}`;
}

/** Why a subject cannot be charged (it names a hash tag, so it may hold no brace), or undefined. */
function badSubject(subject: unknown): TillError | undefined {
  if (typeof subject === 'string' && subject.length > 0 && !/[{}]/.test(subject)) return undefined;
  return tillError('INVALID_ARGUMENT', 'redis', 'a limit subject must be a non-empty string without braces');
}

/** The identity's part of a key's charge, as a charge of its own subject (its record checked by version like a key's). */
export function identityPart(request: ConsumeRequest): ConsumeRequest {
  const identity = request.identity!;
  return {
    subject: identitySubject(identity.id),
    keyVersion: identity.version,
    credits: identity.credits,
    limits: identity.limits,
    cost: request.cost ?? 0,
    now: request.now,
  };
}

/** A key's charge without its identity's part. */
function keyPart(request: ConsumeRequest): ConsumeRequest {
  const { identity: _identity, ...rest } = request;
  return rest;
}

/** Whether a result admitted a request that spent something (refused ones spent nothing). */
function spent(request: ConsumeRequest, result: ConsumeResult): boolean {
  return result.outcome === 'OK' && ((request.cost ?? 0) > 0 || request.limits.some((c) => c.cost > 0));
}

/** What the charges ask of the store they belong to: through it, so that what wraps its methods sees these calls too. */
export interface ChargeStore {
  get(id: string): Promise<KeyRecord | null>;
  refund(request: ConsumeRequest): Promise<void>;
}

/** Most reads (key records and limit states) of one consume call: bounds its run time and its MGET. */
const MAX_READS = 512;

export class Charges {
  private readonly batches = new Map<string, Batch>();
  /** The batches of this turn, in arrival order: sent at the next `setImmediate`. */
  private pending: Batch[] = [];

  /** `chargesWait`: the replicas that must confirm each admitted charge; null: none waited for. */
  constructor(
    private readonly commands: Commands,
    private readonly layout: Layout,
    private readonly callerClock: boolean,
    private readonly chargesWait: Replicas | null,
    private readonly store: ChargeStore,
  ) {}

  /**
   * Charges of one subject that arrive together (within one turn of the event loop: a busy key under
   * many connections) form one batch, which the script answers as if its charges were made one after
   * the other, in arrival order. The batches of a turn, of any number of subjects, go to Redis in one
   * script call made at the next `setImmediate` (on a Cluster, one call for each run of batches of
   * one subject: a call's keys must share a slot). Each request still costs at most one round trip,
   * and Redis runs one script per turn instead of one per request.
   */
  consume(request: ConsumeRequest): Promise<ConsumeResult> {
    const subject = request.subject;
    const bad = badSubject(subject);
    if (bad !== undefined) return Promise.reject(bad);
    const isKey = request.keyVersion !== undefined;
    const identity = request.identity;
    if (identity !== undefined) {
      if (!isKey || badSubject(identity.id) !== undefined) return Promise.reject(tillError('INVALID_ARGUMENT', 'redis', 'an identity is charged with a key'));
      // On Cluster the identity's data lives in another slot than the key's: see consumeApart.
      if (this.commands.client.isCluster) return this.consumeApart(request);
    }
    const policy = isKey && request.credits ? creditPolicy(request.credits) : '';
    const identityPolicy = identity?.credits ? creditPolicy(identity.credits) : '';
    let id = `${subject}\n${isKey ? request.keyVersion : ''}\n${policy}\n${this.callerClock ? request.now : ''}\n${shapeOf(request.limits)}`;
    if (identity !== undefined) id += `\n${identity.id}\n${identity.version}\n${identityPolicy}\n${shapeOf(identity.limits)}`;
    let batch = this.batches.get(id);
    if (batch === undefined) {
      const created: Batch = { request, policy, identityPolicy, items: [] };
      batch = created;
      this.batches.set(id, created);
      if (this.pending.length === 0) setImmediate(() => this.flush());
      this.pending.push(created);
    }
    const items = batch.items;
    return new Promise((resolve, reject) => {
      items.push({ request, resolve, reject });
    });
  }

  /**
   * A key's charge with its identity's on a Redis Cluster, where the two live in different slots and no
   * script can hold both: the identity's part is charged first (a reservation), then the key's; when
   * the key refuses (or fails), the reservation is given back. An admitted request held both charges at
   * once, so nothing is ever over-admitted; a request the key refused may hold the identity's capacity
   * for the moment between (an under-admission, never an over-admission). Two round trips.
   */
  private async consumeApart(request: ConsumeRequest): Promise<ConsumeResult> {
    const reservation = identityPart(request);
    const held = await this.consume(reservation);
    // The identity is gone or changed: the verifier reads the key (and its identity) again.
    if (held.outcome === 'NOT_FOUND' || held.outcome === 'CHANGED') return this.changed(request);
    if (held.outcome !== 'OK') return held;
    let own: ConsumeResult;
    try {
      own = await this.consume(keyPart(request));
    } catch (error) {
      await this.store.refund(reservation).catch(() => {});
      throw error;
    }
    if (own.outcome !== 'OK') {
      await this.store.refund(reservation).catch(() => {});
      return own.outcome === 'NOT_FOUND' || own.outcome === 'CHANGED' ? own : { ...own, limits: own.limits.concat(held.limits) };
    }
    return { ...own, limits: own.limits.concat(held.limits), credits: leastOf(own.credits, held.credits) };
  }

  async refund(request: ConsumeRequest): Promise<void> {
    // A key's charge with its identity's: each part given back in its own slot.
    if (request.identity !== undefined) {
      await Promise.all([this.refund(identityPart(request)), this.refund(keyPart(request))]);
      return;
    }
    const bad = badSubject(request.subject);
    if (bad !== undefined) throw bad;
    const policy = request.keyVersion !== undefined && request.credits ? creditPolicy(request.credits) : '';
    const keys = policy === '' ? [] : [this.creditsKey(request)];
    const args: Array<string | number> = [this.callerClock ? request.now : '', request.limits.length, policy];
    for (const charge of request.limits) {
      keys.push(this.layout.limit(request.subject, charge.bucket ?? charge.name));
      args.push(charge.limit, charge.window);
    }
    args.push(request.cost ?? 0);
    for (const charge of request.limits) args.push(charge.cost);
    await this.commands.run(() => this.commands.client.tillRefund(keys.length, ...keys, ...args));
  }

  /**
   * The live credit count a charge spends: its key's own, or in a rotation chain the first key's
   * (`credits.account`). Every key of a chain is drawn in its first key's slot (see KeyManager.rotate),
   * so one script still reads and charges them together, on Cluster too.
   */
  private creditsKey(request: ConsumeRequest): string {
    return this.layout.credits(request.credits?.account ?? request.subject);
  }

  /** Sends this turn's batches: as few calls as a call's bounds (MAX_READS, a Cluster's slots) allow. */
  private flush(): void {
    const batches = this.pending;
    this.pending = [];
    this.batches.clear();
    const cluster = this.commands.client.isCluster;
    let call: Batch[] = [];
    let reads = 0;
    for (const batch of batches) {
      const identity = batch.request.identity;
      const size = (batch.request.keyVersion === undefined ? 0 : 1) + batch.request.limits.length + (identity === undefined ? 0 : 1 + identity.limits.length);
      if (call.length > 0 && (cluster ? call[0]!.request.subject !== batch.request.subject : reads + size > MAX_READS)) {
        this.send(call);
        call = [];
        reads = 0;
      }
      call.push(batch);
      reads += size;
    }
    if (call.length > 0) this.send(call);
  }

  /** One consume call for these batches, each a group of CONSUME_SCRIPT; each batch settled from its group's reply. */
  private send(call: Batch[]): void {
    const reads: string[] = [];
    const credits: string[] = [];
    const args: Array<string | number> = [call.length, 0];
    for (const { request, policy, identityPolicy, items } of call) {
      const isKey = request.keyVersion !== undefined;
      const identity = request.identity;
      const identityTag = identity === undefined ? '' : identitySubject(identity.id);
      const identityLimits = identity === undefined ? [] : identity.limits;
      if (isKey) reads.push(this.layout.record(request.subject));
      if (identity !== undefined) reads.push(this.layout.record(identityTag));
      if (policy !== '') credits.push(this.creditsKey(request));
      if (identityPolicy !== '') credits.push(this.layout.credits(identityTag));
      args.push(
        this.callerClock ? request.now : '',
        isKey ? request.keyVersion! : '',
        request.limits.length + identityLimits.length,
        policy,
        identity === undefined ? '' : identity.version,
        identityPolicy,
      );
      for (const charge of request.limits) {
        reads.push(this.layout.limit(request.subject, charge.bucket ?? charge.name));
        args.push(charge.limit, charge.window);
      }
      for (const charge of identityLimits) {
        reads.push(this.layout.limit(identityTag, charge.bucket ?? charge.name));
        args.push(charge.limit, charge.window);
      }
      args.push(items.length);
      for (const item of items) {
        args.push(item.request.cost ?? 0);
        for (const charge of item.request.limits) args.push(charge.cost);
        for (const charge of item.request.identity?.limits ?? identityLimits) args.push(charge.cost);
      }
    }
    args[1] = reads.length;
    const keys = credits.length === 0 ? reads : reads.concat(credits);
    this.commands
      .run(() => this.commands.client.tillConsume(keys.length, ...keys, ...args))
      .then(
        (reply) => {
          let at = 0;
          for (const batch of call) at = this.settle(batch, reply, at);
        },
        (error: unknown) => {
          for (const batch of call) for (const item of batch.items) item.reject(error);
        },
      );
  }

  /** Answers a batch's charges from its group's reply, read from `at` in the call's (see CHARGE_FUNCTION); returns where the next group's begins. */
  private settle({ request, items }: Batch, reply: ReadonlyArray<string | number>, at: number): number {
    if (reply[at] === 'CHANGED') {
      for (const item of items) this.changed(item.request).then(item.resolve, item.reject);
      return at + 1;
    }
    const size = 4 + 2 * (request.limits.length + (request.identity?.limits.length ?? 0));
    const results = items.map((item, j) => resultOf(reply, at + j * size, item.request));
    this.admit(items, results);
    return at + items.length * size;
  }

  /** Resolves a batch's charges with their results, once replicas confirm those that spent something (chargesWait). */
  private admit(items: Batch['items'], results: ConsumeResult[]): void {
    // Admitted charges that spent something wait for replicas (chargesWait): refused ones spent nothing.
    const replicas = this.chargesWait;
    if (replicas === null || !items.some((item, j) => spent(item.request, results[j]!))) {
      for (const [j, item] of items.entries()) item.resolve(results[j]!);
      return;
    }
    replicas.confirmCharges().then((error) => {
      // Not confirmed: never admitted. Its charge is given back on the primary (where it was made;
      // a replica that lacks it lacks the refund too), and the request is refused as unavailable.
      // NOT_REPLICATED, not STORE_UNAVAILABLE: the limiter then refuses (503) rather than falling back to
      // per-process limits, which would admit the request after all.
      items.forEach((item, j) => {
        if (error === null || !spent(item.request, results[j]!)) {
          item.resolve(results[j]!);
          return;
        }
        this.store.refund(item.request).catch(() => {});
        item.reject(error);
      });
    });
  }

  /** A charge found the key's record missing or of another version: the record says which. */
  private async changed(request: ConsumeRequest): Promise<ConsumeResult> {
    // An identity's reservation (consumeApart): its caller reads the key.
    if (request.subject.startsWith(IDENTITY_SUBJECT)) return { outcome: 'NOT_FOUND' };
    const record = await this.store.get(request.subject);
    return record === null ? { outcome: 'NOT_FOUND' } : { outcome: 'CHANGED', record };
  }
}

/** One request's answer in its group's reply, read from `at` (see CHARGE_FUNCTION). */
function resultOf(reply: ReadonlyArray<string | number>, at: number, request: ConsumeRequest): ConsumeResult {
  const limits: LimitState[] = [];
  const charges = request.identity === undefined ? request.limits : request.limits.concat(request.identity.limits);
  for (let i = 0; i < charges.length; i++) {
    const charge = charges[i]!;
    limits.push({
      name: charge.name,
      limit: charge.limit,
      window: charge.window,
      remaining: Number(reply[at + 4 + 2 * i]),
      reset: Number(reply[at + 5 + 2 * i]),
    });
  }
  const own = Number(reply[at + 1]);
  const shared = Number(reply[at + 2]);
  const retry = Number(reply[at + 3]);
  // Credits left: the fewer of the key's and its identity's (what the next request can spend).
  const credits = leastOf(own < 0 ? null : own, shared < 0 ? null : shared);
  return { outcome: reply[at] as ChargeOutcome, limits, credits, retryAfter: retry < 0 ? null : retry };
}
