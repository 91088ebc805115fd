// Charges of rate limits and credits on Redis: consume batching (one script call per subject and turn), and refunds.
import { tillError, type TillError } from '../errors.js';
import type { ChargeOutcome, Credits, LimitState } from '../limits/rules.js';
import type { KeyRecord } from '../store/record.js';
import type { ConsumeRequest, ConsumeResult } from '../store/types.js';
import type { Commands } from './commands.js';
import type { Layout } from './layout.js';
import type { Replicas } from './replicas.js';

interface Batch {
  readonly request: ConsumeRequest;
  readonly policy: string;
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

/** Whether a result admitted a request that spent something (refused ones spent nothing). */
function spent(request: ConsumeRequest, result: ConsumeResult): boolean {
  return result.outcome === 'OK' && ((request.cost ?? 0) > 0 || request.limits.some((c) => c.cost > 0));
}

/** What the charges ask of the store they belong to: through it, so that what wraps its methods sees these calls too. */
export interface ChargeStore {
  get(id: string): Promise<KeyRecord | null>;
  refund(request: ConsumeRequest): Promise<void>;
}

export class Charges {
  private readonly batches = new Map<string, Batch>();

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
   * many connections) go to Redis in one script call, made at the next `setImmediate`; the script
   * answers each as if made one after the other, in arrival order. Each request still costs at most
   * one round trip, and a busy key costs Redis one call per turn instead of one per request.
   */
  consume(request: ConsumeRequest): Promise<ConsumeResult> {
    const subject = request.subject;
    const bad = badSubject(subject);
    if (bad !== undefined) return Promise.reject(bad);
    const isKey = request.keyVersion !== undefined;
    const policy = isKey && request.credits ? creditPolicy(request.credits) : '';
    const id = `${subject}\n${isKey ? request.keyVersion : ''}\n${policy}\n${this.callerClock ? request.now : ''}\n${shapeOf(request.limits)}`;
    let batch = this.batches.get(id);
    if (batch === undefined) {
      const created: Batch = { request, policy, items: [] };
      batch = created;
      this.batches.set(id, created);
      setImmediate(() => {
        this.batches.delete(id);
        this.flush(created);
      });
    }
    const items = batch.items;
    return new Promise((resolve, reject) => {
      items.push({ request, resolve, reject });
    });
  }

  async refund(request: ConsumeRequest): Promise<void> {
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

  private flush(batch: Batch): void {
    const { request, policy, items } = batch;
    const isKey = request.keyVersion !== undefined;
    const keys = isKey ? (policy === '' ? [this.layout.record(request.subject)] : [this.layout.record(request.subject), this.creditsKey(request)]) : [];
    const n = request.limits.length;
    const args: Array<string | number> = [this.callerClock ? request.now : '', isKey ? request.keyVersion! : '', n, policy];
    for (const charge of request.limits) {
      keys.push(this.layout.limit(request.subject, charge.bucket ?? charge.name));
      args.push(charge.limit, charge.window);
    }
    args.push(items.length);
    for (const item of items) {
      args.push(item.request.cost ?? 0);
      for (const charge of item.request.limits) args.push(charge.cost);
    }
    this.commands
      .run(() => this.commands.client.tillConsume(keys.length, ...keys, ...args))
      .then(
        (reply) => {
          if (reply[0] === 'CHANGED') {
            for (const item of items) this.changed(item.request).then(item.resolve, item.reject);
            return;
          }
          const results = items.map((item, j) => resultOf(reply, j * (3 + 2 * n), item.request));
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
        },
        (error: unknown) => {
          for (const item of items) item.reject(error);
        },
      );
  }

  /** A charge found the key's record missing or of another version: the record says which. */
  private async changed(request: ConsumeRequest): Promise<ConsumeResult> {
    const record = await this.store.get(request.subject);
    return record === null ? { outcome: 'NOT_FOUND' } : { outcome: 'CHANGED', record };
  }
}

/** One request's answer in the consume script's reply, read from `at` (see CONSUME_SCRIPT). */
function resultOf(reply: ReadonlyArray<string | number>, at: number, request: ConsumeRequest): ConsumeResult {
  const limits: LimitState[] = [];
  for (let i = 0; i < request.limits.length; i++) {
    const charge = request.limits[i]!;
    limits.push({
      name: charge.name,
      limit: charge.limit,
      window: charge.window,
      remaining: Number(reply[at + 3 + 2 * i]),
      reset: Number(reply[at + 4 + 2 * i]),
    });
  }
  const credits = Number(reply[at + 1]);
  const retry = Number(reply[at + 2]);
  return { outcome: reply[at] as ChargeOutcome, limits, credits: credits < 0 ? null : credits, retryAfter: retry < 0 ? null : retry };
}
