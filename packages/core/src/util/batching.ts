// What the audit writer and the usage tracker share: a timer that flushes, one write at a time, and a
// failure logged once per outage.
import type { Logger } from './logger.js';

export abstract class PeriodicWriter {
  private timer: ReturnType<typeof setInterval> | null = null;
  private failing = false;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    protected readonly logger: Logger,
    private readonly every: number,
  ) {}

  /** Writes what was gathered since the last flush. */
  abstract flush(): Promise<void>;

  /** Starts the timer if it is not running (it does not keep the process alive). */
  protected schedule(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.flush(), this.every);
    this.timer.unref?.();
  }

  /** Stops the timer until the next `schedule()` (nothing to write). */
  protected pause(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Runs `write` after the writes before it; on failure calls `failed` and logs `warning` once
   * until a write succeeds again. Resolves when this write is done, never rejects.
   */
  protected enqueue(write: () => Promise<void>, failed: (error: unknown) => void, warning: string): Promise<void> {
    this.writing = this.writing.then(() =>
      write().then(
        () => {
          this.failing = false;
        },
        (error: unknown) => {
          failed(error);
          if (!this.failing) this.logger.warn(`${warning}: ${error instanceof Error ? error.message : String(error)}`);
          this.failing = true;
        },
      ),
    );
    return this.writing;
  }

  /** What is being written now (resolves at once when nothing is). */
  protected get pending(): Promise<void> {
    return this.writing;
  }

  /** Writes what is left and stops the timer. */
  async close(): Promise<void> {
    await this.flush();
    this.pause();
  }
}
